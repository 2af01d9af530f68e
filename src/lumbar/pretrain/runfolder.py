"""What both pretraining procedures share: the run folder, resume state, history, progress.

A pretraining run folder is a weight source for `lumbar train --weights RUN`
(`lumbar.models.weights` describes the convention): config.json holds "backbone",
"preprocessing" and a "pretrain" object (procedure, method, every hyperparameter), and
checkpoint.pt holds {"model": trunk state dict} under the Classifier's "backbone." key names.
Only the trunk goes into "model", so a downstream run always starts with a new head, as in the
paper's transfer learning (a supervised run's source-task head is kept under "head").
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from lumbar.errors import UserError
from lumbar.files import atomic_path, write_text_atomic
from lumbar.models import RUN_CHECKPOINT, RUN_CONFIG, WeightSource, resolve_weights

__all__ = [
    "CURVE",
    "HISTORY",
    "LAST_STATE",
    "METRICS_FILE",
    "PretrainResult",
    "StepProgress",
    "load_history",
    "open_run",
    "recalibrate_batchnorm",
    "save_trunk",
    "weight_source",
    "write_history",
]

LAST_STATE = "last.pt"
HISTORY = "history.csv"
CURVE = "learning-curve.png"
METRICS_FILE = "metrics.json"

ConfigT = TypeVar("ConfigT")


@dataclass
class PretrainResult:
    """What a pretraining run returns: its folder, per-epoch history, kept epoch, time, images."""

    run_dir: Path
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    images: int


def open_run(
    run_dir: Path, config: ConfigT, resume: bool, kind: str
) -> tuple[ConfigT, dict[str, Any] | None]:
    """Check `run_dir` and, with `resume`, take the saved config and last.pt state.

    A resumed run keeps its saved configuration; a larger `config.epochs` extends it.

    Raises:
        UserError: a non-empty folder without `resume`, nothing to resume, or a run of the
            other procedure.
    """
    run_dir = Path(run_dir)
    if not resume:
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise UserError(
                f"run folder {run_dir.name} is not empty; choose a new --out, or add --resume "
                "to continue it"
            )
        return config, None
    if not (run_dir / LAST_STATE).is_file() or not (run_dir / RUN_CONFIG).is_file():
        raise UserError(
            f"nothing to resume in {run_dir.name}: it needs {LAST_STATE} and {RUN_CONFIG} from "
            "an earlier `lumbar pretrain` (drop --resume to start a new run)"
        )
    saved = json.loads((run_dir / RUN_CONFIG).read_text(encoding="utf-8")).get("pretrain", {})
    if saved.get("kind") != kind:
        raise UserError(
            f"{run_dir.name} is not a `lumbar pretrain {kind}` run (it is "
            f"{saved.get('kind', 'something else')}); resume it with its own command"
        )
    values = dict(saved["config"])
    values["epochs"] = max(int(values["epochs"]), int(getattr(config, "epochs", 0) or 0))
    resumed = type(config)(**values)
    state = torch.load(run_dir / LAST_STATE, map_location="cpu", weights_only=True)
    return resumed, state


def weight_source(backbone: str, weights: str, input_size: int | None) -> WeightSource:
    """The starting weights and their preprocessing, at `input_size` when given."""
    source = resolve_weights(backbone, weights)
    if input_size is not None:
        size = (int(input_size), int(input_size))
        source = dataclasses.replace(
            source, preprocessing=dataclasses.replace(source.preprocessing, input_size=size)
        )
    return source


def save_trunk(run_dir: Path, trunk: nn.Module, **extra: Any) -> Path:
    """Write RUN/checkpoint.pt = {"model": {"backbone.<key>": tensor}, **extra} atomically."""
    state = {f"backbone.{k}": v.detach().cpu() for k, v in trunk.state_dict().items()}
    target = Path(run_dir) / RUN_CHECKPOINT
    with atomic_path(target) as tmp:
        torch.save({"model": state, **extra}, tmp)
    return target


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON object atomically (pretty-printed)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_history(run_dir: Path, history: list[dict[str, float]], fields: Sequence[str]) -> None:
    """RUN/history.csv, one row per epoch (repr: a resumed run's file equals an uninterrupted's)."""
    with atomic_path(Path(run_dir) / HISTORY) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        for row in history:
            writer.writerow({k: repr(row[k]) for k in fields})


def load_history(run_dir: Path) -> list[dict[str, float]]:
    """The rows of RUN/history.csv (epoch as int)."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]


class StepProgress:
    """Progress bars for epochs and steps with live loss and images/s (no-op when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from lumbar.progress import progress_bar

            self.bar = progress_bar("info")
            self.bar.start()

    def task(self, description: str, total: int, done: int = 0) -> Any:
        if self.bar is None:
            return None
        return self.bar.add_task(description, total=total, completed=done, info="")

    def update(self, task: Any, advance: int = 1, info: str = "") -> None:
        if self.bar is not None and task is not None:
            self.bar.update(task, advance=advance, info=info)

    def hide(self, task: Any) -> None:
        if self.bar is not None and task is not None:
            self.bar.update(task, visible=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class Throughput:
    """Images per second over an epoch, for the progress bar and the history."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.images = 0

    def add(self, n: int) -> None:
        self.images += n

    @property
    def rate(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)


def say_unreadable(say: Callable[[str], None], count: int, total: int) -> None:
    """One warning line for files that could not be decoded (skipped, not fatal)."""
    if count:
        say(f"warning: skipped {count} unreadable file(s) of {total} (not images, or damaged)")


def recalibrate_batchnorm(
    forward: Callable[[torch.Tensor], torch.Tensor],
    module: nn.Module,
    batches: Iterable[torch.Tensor],
) -> int:
    """Recompute every BatchNorm's running statistics as the plain mean over `batches`.

    A frozen backbone runs its BatchNorm layers in inference mode, on running statistics. Those
    lag behind the weights during training (an exponential average over past steps, started
    at mean 0 / variance 1), and after a short run on a small set they can be far off, so the
    frozen features collapse to nearly constant values. Recomputing them with the final
    weights ("precise BatchNorm", Wu & Johnson 2021) on un-augmented images of the same set
    fixes that at the cost of one forward pass.

    Args:
        forward: runs the network on a batch (e.g. `trunk.forward_features`).
        module: the network whose BatchNorm layers are recomputed.
        batches: input batches (already normalised, on the network's device).

    Returns:
        The number of images used (0: nothing changed).
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    states = {id(m): (m.running_mean.clone(), m.running_var.clone()) for m in norms}
    was_training = module.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    module.train()
    seen = 0
    try:
        with torch.no_grad():
            for x in batches:
                if len(x) < 2:  # a batch of one has no variance
                    continue
                forward(x)
                seen += len(x)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
            if seen == 0:
                m.running_mean.copy_(states[id(m)][0])
                m.running_var.copy_(states[id(m)][1])
        module.train(was_training)
    return seen
