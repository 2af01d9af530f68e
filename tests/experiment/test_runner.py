"""`lumbar experiment` end to end on phantom data: folder layout, resume, failures, Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.experiment import write_config
from helpers.tiny_run import write_learnable_manifest
from typer.testing import CliRunner

from lumbar.cli import app
from lumbar.experiment import run_experiment

TINY = """
name: tiny
train: {{epochs: 1, input_size: 32, batch_size: 16, hidden: 16, aug_variants: 1}}
datasets:
  main: {dataset}
procedures:
  - procedure: 1
    backbones: [efficientnet_lite0]
    modes: [frozen, finetune]
"""


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["experiment", *args])
    return result.exit_code, result.output


def test_phantom_experiment_end_to_end_and_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUMBAR_PSEUDONYM_SECRET", "test-only")
    config = write_config(
        tmp_path / "tiny.yaml", TINY.format(dataset="{synth: {patients: 12, seed: 5}}")
    )
    out = tmp_path / "exp"
    code, output = cli(str(config), "--out", str(out), "--workers", "1", "--no-report")
    assert code == 0, output
    frozen = "p1-efficientnet_lite0-imagenet-frozen-noroi-s0"
    finetune = "p1-efficientnet_lite0-imagenet-finetune-noroi-s0"
    assert f"[2/2] {finetune}: done" in output
    plan = json.loads((out / "plan.json").read_text())
    assert [r["id"] for r in plan["runs"]] == [frozen, finetune]
    assert plan["runs"][1]["init_from"] == frozen
    assert Path(plan["datasets"]["main"]["manifest"]).is_file()
    assert Path(plan["datasets"]["main"]["lesions"]).is_file()
    assert (out / "experiment.yaml").read_text() == config.read_text()
    for run in (frozen, finetune):
        folder = out / "runs" / run
        assert (folder / "DONE").is_file()
        assert json.loads((folder / "spec.json").read_text())["id"] == run
        assert "test" in json.loads((folder / "metrics.json").read_text())
    # the fine-tuned twin read the prefix its frozen twin stored
    assert "prefix cache hit" in (out / "runs" / finetune / "run.log").read_text()

    # a rerun skips what is DONE
    code, output = cli(str(config), "--out", str(out), "--no-report")
    assert code == 0 and output.count("already done") == 2, output

    # killed mid-way: the frozen run lost DONE (resumed from last.pt); the fine-tuned one
    # lost everything but its folder (restarted)
    (out / "runs" / frozen / "DONE").unlink()
    folder = out / "runs" / finetune
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "history.csv").write_text("epoch\n")
    code, output = cli(str(config), "--out", str(out), "--no-report")
    assert code == 0, output
    assert f"{frozen}: done" in output and f"{finetune}: done" in output
    assert (folder / "DONE").is_file()


def test_failing_run_is_reported_and_others_finish(tmp_path: Path) -> None:
    """The manifest has no herniation column: those runs fail, the disc_abnormal one runs."""
    manifest = write_learnable_manifest(tmp_path / "data")
    text = TINY.format(dataset=f"{{manifest: {manifest}}}").replace(
        "efficientnet_lite0]\n    modes: [frozen, finetune]",
        "mobilenet_v2]\n    sources: [scratch]\n    modes: [frozen]\n"
        "    targets: [herniation, disc_abnormal]",
    )
    config = write_config(tmp_path / "fail.yaml", text)
    code, output = cli(str(config), "--out", str(tmp_path / "exp"), "--no-report")
    assert code == 1, output
    ok = "p1-mobilenet_v2-scratch-frozen-noroi-disc_abnormal-s0"
    assert f"{ok}: done" in output
    assert "p1-mobilenet_v2-scratch-frozen-noroi-herniation-s0: FAILED: " in output
    assert "has no herniation column" in output
    assert (tmp_path / "exp" / "runs" / ok / "DONE").is_file()


def test_dry_run_cli_writes_nothing(tmp_path: Path) -> None:
    manifest = write_learnable_manifest(tmp_path / "data")
    config = write_config(tmp_path / "x.yaml", TINY.format(dataset=f"{{manifest: {manifest}}}"))
    code, output = cli(str(config), "--out", str(tmp_path / "exp"), "--dry-run")
    assert code == 0 and "p1-efficientnet_lite0-imagenet-finetune-noroi-s0" in output
    assert not (tmp_path / "exp").exists()


def test_ray_executor_on_a_local_instance(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'lumbar[ray]')")
    manifest = write_learnable_manifest(tmp_path / "data")
    text = TINY.format(dataset=f"{{manifest: {manifest}}}").replace(
        "efficientnet_lite0]", "mobilenet_v2]\n    sources: [scratch]"
    )
    config = write_config(tmp_path / "ray.yaml", text)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_experiment(config, tmp_path / "exp", executor="ray", workers=2,
                                report=False, progress=False)  # fmt: skip
    finally:
        ray.shutdown()
    assert [r.status for r in result.results] == ["done", "done"]
    assert all((tmp_path / "exp" / "runs" / r.id / "DONE").is_file() for r in result.results)
