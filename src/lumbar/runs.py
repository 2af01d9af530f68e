"""The run folder: the contract between `lumbar train` / `lumbar pretrain` and every reader.

A run folder holds (DESIGN.md, "Weights"; names defined here and nowhere else)::

    RUN/config.json          the resolved configuration: "backbone", "preprocessing", the
                             classifier's keys (`Classifier.config()`) and the builder's own
                             ("train", "pretrain", "target", "class_names", "roi", ...)
    RUN/checkpoint.pt        {"model": state_dict, ...}: the kept weights
    RUN/last.pt              model, optimiser and RNG state after the last epoch (resume)
    RUN/history.csv          one row per finished epoch
    RUN/metrics.json         the kept epoch's metrics (validation, test)
    RUN/learning-curve.png   loss and accuracy per epoch
    RUN/predictions-<tag>.csv, RUN/evaluation-<tag>.json, RUN/confusion-<tag>.png
                             `lumbar evaluate` on one split (tag: the split, or split-<hash>
                             for another manifest)
    RUN/DONE, RUN/spec.json, RUN/run.log
                             a finished `lumbar experiment` job, its plan entry, its log

The file names have not changed since the first release, so every run folder written before
still loads. torch is imported only by the functions that read or write `.pt` files.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumbar.errors import UserError
from lumbar.files import atomic_path, write_csv_atomic, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "CURVE",
    "DONE",
    "HISTORY",
    "LAST_STATE",
    "LOG",
    "METRICS",
    "SPEC",
    "confusion_path",
    "evaluation_path",
    "is_done",
    "is_weights_run",
    "mark_done",
    "open_run_folder",
    "predictions_path",
    "read_checkpoint",
    "read_config",
    "read_history",
    "read_json",
    "read_metrics",
    "restore_training_state",
    "resumable",
    "save_checkpoint",
    "save_training_state",
    "write_config",
    "write_history",
    "write_log",
    "write_metrics",
]

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
LAST_STATE = "last.pt"
HISTORY = "history.csv"
METRICS = "metrics.json"
CURVE = "learning-curve.png"
DONE = "DONE"
SPEC = "spec.json"
LOG = "run.log"


# --------------------------------------------------------------------------- config.json


def read_config(
    run_dir: Path, *, require: tuple[str, ...] = (), kind: str = "run folder"
) -> dict[str, Any]:
    """RUN/config.json as a dict: the one reader of a run folder's configuration.

    Args:
        run_dir: a run folder of `lumbar train` or `lumbar pretrain`.
        require: keys the caller needs (a config from another version may lack them).
        kind: what the caller expects the folder to be, for the error message.

    Raises:
        UserError: no readable config.json, not a JSON object, or a required key missing.
    """
    name = Path(run_dir).name
    try:
        config = json.loads((Path(run_dir) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(
            f"{name} is not a {kind} (no readable {CONFIG}; make one with `lumbar train --out RUN`)"
        ) from None
    if not isinstance(config, dict):
        raise UserError(f"{CONFIG} of {name} is not a JSON object")
    missing = [key for key in require if key not in config]
    if missing:
        raise UserError(f"{name} is not a {kind}: its {CONFIG} lacks {', '.join(missing)}")
    return config


def write_config(run_dir: Path, config: dict[str, Any]) -> Path:
    """Create the run folder and write RUN/config.json atomically; return its path."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(run_dir) / CONFIG, config)
    return Path(run_dir) / CONFIG


def is_weights_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds a config.json and a checkpoint.pt (a `--weights` source)."""
    return (Path(run_dir) / CHECKPOINT).is_file() and (Path(run_dir) / CONFIG).is_file()


# --------------------------------------------------------------------------- checkpoint.pt


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write RUN/checkpoint.pt (`state`, e.g. {"model": state_dict, "epoch": 3}) atomically."""
    import torch

    target = Path(run_dir) / CHECKPOINT
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
    return target


def read_checkpoint(run_dir: Path) -> dict[str, Any]:
    """RUN/checkpoint.pt as saved (tensors on the CPU)."""
    import torch

    return torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- last.pt


def open_run_folder(
    run_dir: Path, resume: bool, command: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Check that `run_dir` can take a new run, or, with `resume`, has one to continue.

    Returns:
        (RUN/config.json, RUN/last.pt state) to resume from; (None, None) for a new run.

    Raises:
        UserError: a non-empty folder (or a file) without `resume`; nothing to resume (the
            message names `command`, e.g. "lumbar train", as what makes a run).
    """
    import torch

    run_dir = Path(run_dir)
    if not resume:
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise UserError(
                f"run folder {run_dir.name} is not empty; choose a new run folder, or resume "
                "the run in it",
                option="resume",
            )
        return None, None
    if not resumable(run_dir):
        raise UserError(
            f"nothing to resume in {run_dir.name}: it needs {LAST_STATE} and {CONFIG} from an "
            f"earlier `{command}` (start a new run instead)",
            option="resume",
        )
    saved = read_config(run_dir)
    state = torch.load(run_dir / LAST_STATE, map_location="cpu", weights_only=True)
    return saved, state


def resumable(run_dir: Path) -> bool:
    """Whether `run_dir` holds a run to continue (RUN/last.pt and RUN/config.json)."""
    return (Path(run_dir) / LAST_STATE).is_file() and (Path(run_dir) / CONFIG).is_file()


def save_training_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    **extra: Any,
) -> None:
    """RUN/last.pt: model, optimiser and RNG state after `epoch` (plus `extra`), atomically."""
    import torch

    with atomic_path(Path(run_dir) / LAST_STATE) as tmp:
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "epoch": epoch,
                **extra,
            },
            tmp,
        )


def restore_training_state(
    state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> int:
    """Load a `save_training_state` state into `model`, `optimizer` and the RNG; return the
    number of epochs it had finished (the next epoch to run)."""
    import torch

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return int(state["epoch"])


# --------------------------------------------------------------------------- history.csv


def write_history(run_dir: Path, history: list[dict[str, float]], fields: Sequence[str]) -> None:
    """RUN/history.csv, one row per epoch, atomically.

    Values are written with repr, which round-trips exactly, so a resumed run's history equals
    an uninterrupted one's.
    """
    rows = ({k: repr(row[k]) for k in fields} for row in history)
    write_csv_atomic(Path(run_dir) / HISTORY, rows, fields)


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """The epochs of RUN/history.csv (epoch as int; [] when the run has none yet)."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]


# --------------------------------------------------------------------------- metrics.json


def read_json(run_dir: Path, name: str) -> Any:
    """RUN/`name` parsed as JSON, or None when it is absent or unreadable."""
    try:
        return json.loads((Path(run_dir) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """RUN/metrics.json, or None while the run has not finished."""
    metrics = read_json(run_dir, METRICS)
    return metrics if isinstance(metrics, dict) else None


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write RUN/metrics.json atomically; return its path."""
    write_json_atomic(Path(run_dir) / METRICS, metrics)
    return Path(run_dir) / METRICS


# --------------------------------------------------------------------------- evaluation


def predictions_path(run_dir: Path, tag: str) -> Path:
    """RUN/predictions-<tag>.csv: per-image probabilities of `lumbar evaluate`."""
    return Path(run_dir) / f"predictions-{tag}.csv"


def evaluation_path(run_dir: Path, tag: str) -> Path:
    """RUN/evaluation-<tag>.json: the metrics with confidence intervals."""
    return Path(run_dir) / f"evaluation-{tag}.json"


def confusion_path(run_dir: Path, tag: str) -> Path:
    """RUN/confusion-<tag>.png: the confusion matrix."""
    return Path(run_dir) / f"confusion-{tag}.png"


# --------------------------------------------------------------------------- experiment jobs


def is_done(run_dir: Path) -> bool:
    """Whether an experiment job finished in `run_dir` (its DONE marker)."""
    return (Path(run_dir) / DONE).is_file()


def mark_done(run_dir: Path, spec: dict[str, Any], log: Sequence[str]) -> None:
    """Write the job's spec.json and run.log, then its DONE marker (last: DONE means all)."""
    write_text_atomic(Path(run_dir) / SPEC, json.dumps(spec, indent=2) + "\n")
    write_log(run_dir, "\n".join(log) + "\n")
    write_text_atomic(Path(run_dir) / DONE, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")


def write_log(run_dir: Path, text: str) -> None:
    """Write RUN/run.log atomically (an experiment job's notes, or its traceback)."""
    write_text_atomic(Path(run_dir) / LOG, text)
