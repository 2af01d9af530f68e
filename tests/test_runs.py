"""The run folder (`lumbar.runs`): its files as every release wrote them, and their readers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from lumbar import runs
from lumbar.errors import UserError
from lumbar.models import WeightSource, build_classifier, load_classifier, resolve_weights
from lumbar.models.preprocessing import Preprocessing

HISTORY_ROWS = [
    {"epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "val_accuracy": 0.5, "seconds": 1.25},
    {"epoch": 2, "train_loss": 0.7, "val_loss": 0.6, "val_accuracy": 0.75, "seconds": 1.5},
]


def write_run_folder_as_released(run_dir: Path) -> torch.nn.Module:
    """A `lumbar train` run folder written the way releases before `lumbar.runs` wrote it:
    literal file names and layouts (plain json, csv and torch.save), none of lumbar's writers."""
    torch.manual_seed(0)
    prep = Preprocessing(input_size=(32, 32))
    model = build_classifier(
        "mobilenet_v2", 2, WeightSource("scratch", "mobilenet_v2", prep, None, "scratch"), hidden=8
    )
    run_dir.mkdir(parents=True)
    config = {
        **model.config(),
        "target": "disc_abnormal",
        "class_names": ["normal", "abnormal"],
        "roi": "none",
        "manifest": "/data/ds/manifest.csv",
        "train": {"epochs": 2, "mode": "frozen", "weights": "scratch", "seed": 0},
    }
    (run_dir / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    torch.save(
        {"model": model.state_dict(), "epoch": 2, "val_loss": 0.6}, run_dir / "checkpoint.pt"
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": 2,
            "best_val_loss": 0.6,
            "best_epoch": 2,
            "stale": 0,
        },
        run_dir / "last.pt",
    )
    with open(run_dir / "history.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(HISTORY_ROWS[0]))
        writer.writeheader()
        writer.writerows({k: repr(v) for k, v in row.items()} for row in HISTORY_ROWS)
    (run_dir / "metrics.json").write_text(json.dumps({"best_epoch": 2, "best_val_loss": 0.6}))
    return model.eval()


def test_a_run_folder_from_before_the_layout_change_still_loads(tmp_path: Path) -> None:
    run = tmp_path / "old-run"
    original = write_run_folder_as_released(run)
    assert runs.read_config(run, require=("target", "manifest"))["target"] == "disc_abnormal"
    assert runs.read_history(run) == HISTORY_ROWS
    assert runs.read_metrics(run) == {"best_epoch": 2, "best_val_loss": 0.6}
    assert runs.read_checkpoint(run)["epoch"] == 2
    assert resolve_weights("mobilenet_v2", run).kind == "run"
    loaded = load_classifier(run)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))
    saved, state = runs.open_run_folder(run, resume=True, command="lumbar train")
    assert saved is not None and saved["train"]["epochs"] == 2
    assert state is not None and state["best_epoch"] == 2
    optimizer = torch.optim.Adam(loaded.parameters(), lr=1e-3)
    assert runs.restore_training_state(state, loaded, optimizer) == 2


def test_written_files_keep_the_released_names(tmp_path: Path) -> None:
    run = tmp_path / "run"
    runs.write_config(run, {"backbone": "vgg16"})
    runs.save_checkpoint(run, {"model": {}, "epoch": 1})
    runs.write_history(run, HISTORY_ROWS, list(HISTORY_ROWS[0]))
    runs.write_metrics(run, {"best_epoch": 1})
    names = {p.name for p in run.iterdir()}
    assert names == {"config.json", "checkpoint.pt", "history.csv", "metrics.json"}
    assert runs.read_history(run) == HISTORY_ROWS  # repr round-trips every float exactly
    assert runs.predictions_path(run, "test").name == "predictions-test.csv"
    assert runs.evaluation_path(run, "val").name == "evaluation-val.json"
    assert runs.confusion_path(run, "test").name == "confusion-test.png"


def test_new_and_resumed_runs_are_checked(tmp_path: Path) -> None:
    assert runs.open_run_folder(tmp_path / "absent", resume=False, command="x") == (None, None)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not empty") as err:
        runs.open_run_folder(busy, resume=False, command="lumbar train")
    assert err.value.option == "resume"
    with pytest.raises(UserError, match=r"nothing to resume in busy.*`lumbar train`"):
        runs.open_run_folder(busy, resume=True, command="lumbar train")


def test_a_folder_without_config_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a training run"):
        runs.read_config(tmp_path, kind="training run")
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not a JSON object"):
        runs.read_config(tmp_path)
    (tmp_path / "config.json").write_text('{"backbone": "vgg16"}')
    with pytest.raises(UserError, match="lacks target"):
        runs.read_config(tmp_path, require=("backbone", "target"))


def test_experiment_job_markers(tmp_path: Path) -> None:
    assert not runs.is_done(tmp_path)
    runs.mark_done(tmp_path, {"id": "p1"}, ["trained"])
    assert runs.is_done(tmp_path)
    assert runs.read_json(tmp_path, runs.SPEC) == {"id": "p1"}
    assert (tmp_path / "run.log").read_text() == "trained\n"
