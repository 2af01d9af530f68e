"""`pretrain_supervised` (Procedure 2): run folder, transfer with `lumbar train`, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.pretrain import SIZE, tiny_config, torchrun_pretrain, train_from

from lumbar.errors import UserError
from lumbar.models import build_classifier, resolve_weights
from lumbar.models.weights import read_weights_file
from lumbar.pretrain import SupervisedPretrainConfig, pretrain_supervised


def tiny(source: Path, **overrides: object) -> SupervisedPretrainConfig:
    values: dict = {"lr": 1e-3, "val_fraction": 0.25, **overrides}
    return tiny_config(SupervisedPretrainConfig, source, **values)


@pytest.fixture(scope="module")
def run(source_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sup") / "run"
    result = pretrain_supervised(tiny(source_set), out, progress=False)
    assert result.images == 16 and len(result.history) == 2
    return out


def test_run_folder_is_complete_and_records_the_method(run: Path) -> None:
    for name in ("config.json", "checkpoint.pt", "last.pt", "history.csv",
                 "learning-curve.png", "metrics.json"):  # fmt: skip
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "mobilenet_v2"
    assert config["preprocessing"]["input_size"] == [SIZE, SIZE]
    assert config["pretrain"]["kind"] == "supervised"
    assert config["pretrain"]["config"]["lr"] == 1e-3
    assert config["class_names"] == ["normal", "abnormal"]
    assert config["data"]["train_images"] + config["data"]["val_images"] == 16
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] in (1, 2) and metrics["unreadable"] == 0


def test_checkpoint_is_a_weight_source_with_a_new_head(run: Path) -> None:
    source = resolve_weights("mobilenet_v2", run)
    assert source.kind == "run" and source.preprocessing.input_size == (SIZE, SIZE)
    state = read_weights_file(run / "checkpoint.pt")
    assert state and all(k.startswith("backbone.") for k in state)  # the trunk only
    model = build_classifier("mobilenet_v2", 4, run, hidden=16)  # other class count: fine
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[f"backbone.{key}"]), key


def test_lumbar_train_accepts_the_run(run: Path, phantom_manifest: Path, tmp_path: Path) -> None:
    result = train_from(run, phantom_manifest, tmp_path / "down")
    saved = json.loads((tmp_path / "down" / "config.json").read_text())
    assert saved["weights"]["kind"] == "run"
    assert saved["preprocessing"]["input_size"] == [SIZE, SIZE]  # normalised as pretrained
    assert "f1" in result.metrics["test"]
    trunk = read_weights_file(run / "checkpoint.pt")
    trained = read_weights_file(tmp_path / "down" / "checkpoint.pt")
    key = next(k for k in trunk if k.endswith("weight"))
    assert torch.equal(trunk[key], trained[key])  # frozen transfer keeps the pretrained trunk


def test_resume_continues_exactly(source_set: Path, run: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    pretrain_supervised(tiny(source_set, epochs=1), out, progress=False)
    result = pretrain_supervised(tiny(source_set, epochs=2), out, resume=True, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2]
    full = [line.split(",")[:7] for line in (run / "history.csv").read_text().splitlines()]
    part = [line.split(",")[:7] for line in (out / "history.csv").read_text().splitlines()]
    assert part == full  # losses and metrics equal an uninterrupted run's (not the timings)


def test_bad_settings_and_folders(source_set: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown backbone"):
        pretrain_supervised(tiny(source_set, backbone="vgg17"), tmp_path / "a", progress=False)
    with pytest.raises(UserError, match="nothing to resume"):
        pretrain_supervised(tiny(source_set), tmp_path / "b", resume=True, progress=False)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    with pytest.raises(UserError, match="not empty"):
        pretrain_supervised(tiny(source_set), tmp_path / "c", progress=False)
    assert not (tmp_path / "a").exists()


def test_torchrun_two_processes(source_set: Path, tmp_path: Path) -> None:
    """Two gloo processes split each global batch and combine their validation predictions."""
    out = tmp_path / "ddp"
    result = torchrun_pretrain(
        "supervised", source_set, out, "--lr", "1e-3", "--val-fraction", "0.25"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and metrics["val"]["val_accuracy"] >= 0.0
    assert result.stdout.count("wrote") == 1  # one summary: the main process's
