"""`lumbar pretrain supervised|unlabelled` through the command line (Typer), end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from helpers.pretrain import SIZE
from typer.testing import CliRunner

from lumbar.cli.pretrain import pretrain_app

QUICK = ["--backbone", "mobilenet_v2", "--input-size", str(SIZE), "--epochs", "1",
         "--batch-size", "8", "--workers", "0", "--threads", "1", "--device", "cpu",
         "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    """The app as `lumbar` mounts it (`lumbar pretrain ...`)."""
    app = typer.Typer()
    app.add_typer(pretrain_app, name="pretrain")
    return app


def test_help_names_both_procedures(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["pretrain", "--help"])
    assert result.exit_code == 0
    assert "supervised" in result.output and "unlabelled" in result.output
    assert "unlabeled" not in result.output  # the old spelling works but is not listed
    for spelling in ("unlabelled", "unlabeled"):
        result = CliRunner().invoke(cli, ["pretrain", spelling, "--help"])
        assert result.exit_code == 0 and "simclr" in result.output


def test_supervised_with_a_class_map(cli: typer.Typer, source_set: Path, tmp_path: Path) -> None:
    classes = tmp_path / "map.yaml"
    classes.write_text("glioma: abnormal\npituitary: abnormal\nno_tumor: normal\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["pretrain", "supervised", "--data", str(source_set), "--classes", str(classes),
              "--out", str(out), "--lr", "1e-3", *QUICK],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out} (supervised mobilenet_v2, 12 images")
    assert f"--weights {out}" in result.stdout
    assert "1 folder(s) not in class map map.yaml, left out: meningioma" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["folders"] == {"glioma": 4, "pituitary": 4, "no_tumor": 4}


def test_unlabelled_then_resume(cli: typer.Typer, unlabelled_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "ssl"
    args = ["pretrain", "unlabelled", "--data", str(unlabelled_set), "--out", str(out), *QUICK]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "(simclr mobilenet_v2, 16 images, 1 epochs" in result.stdout
    result = CliRunner().invoke(
        cli, ["pretrain", "unlabeled", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]
    )  # the old spelling of the command resumes the run too
    assert result.exit_code == 0, result.output
    assert "(simclr mobilenet_v2, 16 images, 2 epochs" in result.stdout
    result = CliRunner().invoke(
        cli, ["pretrain", "unlabelled", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "(simclr mobilenet_v2, 16 images, 2 epochs" in result.stdout


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "A" / "only").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "lumbar.cli", "pretrain", "supervised", "--data",
         str(tmp_path / "A"), "--out", str(tmp_path / "run"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: the class folders under")
    assert not (tmp_path / "run").exists()
