"""`lumbar train`: run folder, determinism, resume, cached = naive, bad input, torchrun DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.tiny_run import SIZE, tiny, write_learnable_manifest

from lumbar.errors import UserError
from lumbar.models import load_classifier
from lumbar.runs import read_history
from lumbar.train import train


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_learnable_manifest(tmp_path_factory.mktemp("train-data"))


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def test_run_folder_and_same_seed_same_result(manifest: Path, tmp_path: Path) -> None:
    first = train(tiny(manifest), tmp_path / "a", progress=False)
    second = train(tiny(manifest), tmp_path / "b", progress=False)
    run = tmp_path / "a"
    for name in ("config.json", "checkpoint.pt", "history.csv", "learning-curve.png",
                 "metrics.json", "last.pt", "confusion-test.png"):  # fmt: skip
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "mobilenet_v2" and config["num_classes"] == 2
    assert config["train"]["epochs"] == 3 and config["preprocessing"]["input_size"] == [32, 32]
    assert config["data"]["class_weights"][0] > config["data"]["class_weights"][1]  # imbalance
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "ci"} <= set(metrics["test"])

    def strip(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert strip(first.history) == strip(second.history)
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    model = load_classifier(run)  # the run folder contract of lumbar.models
    assert model(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 2)


def test_resume_ends_like_an_uninterrupted_run(manifest: Path, tmp_path: Path) -> None:
    cfg = tiny(manifest, dropout=0.5)
    whole = train(cfg, tmp_path / "whole", progress=False)
    train(tiny(manifest, dropout=0.5, epochs=2), tmp_path / "cut", progress=False)
    resumed = train(tiny(manifest, epochs=3), tmp_path / "cut", resume=True, progress=False)
    key = ("train_loss", "val_loss", "val_accuracy")
    assert [[r[k] for k in key] for r in resumed.history] == [
        [r[k] for k in key] for r in whole.history
    ]
    assert len(read_history(tmp_path / "cut")) == 3
    last_a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    last_b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_cached_loop_equals_naive_loop(manifest: Path, tmp_path: Path, mode: str) -> None:
    """Frozen, and fine-tuning the last block: with a cached variant per epoch, loops agree."""
    common = {"mode": mode, "unfreeze": 1, "epochs": 2, "aug_variants": 2, "lr": 1e-3}
    cached = train(tiny(manifest, **common), tmp_path / "cached", progress=False)
    naive = train(
        tiny(manifest, **common, cache_features=False), tmp_path / "naive", progress=False
    )
    config = json.loads((tmp_path / "cached" / "config.json").read_text())
    assert config["cached_stages"] > 0
    for a, b in zip(cached.history, naive.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backbone": "alexnet"}, "unknown backbone"),
        ({"target": "disc_colour"}, "unknown target"),
        ({"target": "scs"}, "no scs column"),
        ({"weights": "no-such-weights.pth"}, "weights"),
        ({"mode": "half"}, "mode must be frozen or finetune"),
        ({"epochs": 0}, "epochs must be at least 1"),
    ],
)
def test_bad_input_is_one_line(
    manifest: Path, tmp_path: Path, overrides: dict, message: str
) -> None:
    with pytest.raises(UserError) as info:
        train(tiny(manifest, **overrides), tmp_path / "run", progress=False)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_empty_split_and_mismatched_weights(manifest: Path, tmp_path: Path) -> None:
    text = manifest.read_text().replace(",val\n", ",test\n")
    no_val = manifest.parent / "no-val.csv"
    no_val.write_text(text)
    with pytest.raises(UserError, match="val split has no image"):
        train(tiny(no_val), tmp_path / "r1", progress=False)
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.0.weight": torch.zeros(5, 5, 3, 3)}, bad)
    with pytest.raises(UserError) as info:
        train(tiny(manifest, weights=str(bad)), tmp_path / "r2", progress=False)
    assert "\n" not in str(info.value)
    train(tiny(manifest, epochs=1), tmp_path / "r3", progress=False)
    with pytest.raises(UserError, match="not empty"):
        train(tiny(manifest, epochs=1), tmp_path / "r3", progress=False)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lumbar.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_cli_error_exit_2(manifest: Path, tmp_path: Path) -> None:
    result = _cli("train", "--manifest", str(manifest), "--backbone", "alexnet",
                  "--out", str(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown backbone" in result.stderr


def test_torchrun_ddp_matches_one_process(manifest: Path, tmp_path: Path) -> None:
    """Two gloo processes split every batch; gradients equal one process's (no dropout)."""
    args = ["--manifest", str(manifest), "--backbone", "mobilenet_v2", "--weights", "scratch",
            "--mode", "frozen", "--epochs", "2", "--batch-size", "8", "--lr", "1e-3",
            "--input-size", str(SIZE), "--quiet"]  # fmt: skip
    config = tmp_path / "cfg.yaml"
    config.write_text("dropout: 0.0\nhidden: 16\nthreads: 1\n")
    single = tmp_path / "single"
    assert _cli("train", *args, "--config", str(config), "--out", str(single)).returncode == 0
    ddp = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "lumbar.cli", "train", *args, "--config", str(config), "--out", str(ddp)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((ddp / "config.json").read_text())["world_size"] == 2
    for a, b in zip(read_history(single), read_history(ddp), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_finetune_from_a_frozen_run_starts_from_its_head(manifest: Path, tmp_path: Path) -> None:
    from lumbar.train.loop import _model_for

    train(tiny(manifest, epochs=1), tmp_path / "frozen", progress=False)
    cfg = tiny(manifest, weights=str(tmp_path / "frozen"), mode="finetune").resolved()
    model = _model_for(cfg)
    saved = _state(tmp_path / "frozen")
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key  # trunk and head both come from the run
