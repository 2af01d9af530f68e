"""What both pretraining procedures share: the run folder, resume state, throughput, BatchNorm.

A pretraining run folder (`lumbar.runs`) is a weight source for `lumbar train --weights RUN`
(`lumbar.models.weights` describes the convention): config.json holds "backbone",
"preprocessing" and a "pretrain" object (procedure, method, every hyperparameter), and
checkpoint.pt holds {"model": trunk state dict} under the Classifier's "backbone." key names.
Only the trunk goes into "model", so a downstream run always starts with a new head, as in the
paper's transfer learning (a supervised run's source-task head is kept under "head").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import numpy as np
import torch
from torch import nn

from lumbar import runs
from lumbar.errors import UserError
from lumbar.models import list_backbones
from lumbar.pretrain.dataset import ImageFileDataset, plain_batches
from lumbar.train.runtime import Dist, pick_device, process_group
from lumbar.train.steps import resume_training, start_run

SettingsT = TypeVar("SettingsT")

#: Older spellings of a procedure's kind in saved run folders and experiment configs.
KIND_ALIASES = {"unlabeled": "unlabelled"}

__all__ = [
    "PretrainResult",
    "PretrainRun",
    "PretrainSettings",
    "check_settings",
    "readable",
    "recalibrate_batchnorm",
    "recalibrate_trunk",
    "resume_state",
    "run_pretraining",
    "save_trunk",
    "saved_settings",
    "settings_from_options",
    "unreadable_paths",
]


@dataclass
class PretrainResult:
    """What a pretraining run returns: its folder, per-epoch history, kept epoch, time, the
    images it used, and the backbone and method of the run (a resumed run's own)."""

    run_dir: Path
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    images: int
    backbone: str = ""
    method: str = ""


class PretrainSettings:
    """What the settings dataclasses of both procedures share: being built from options."""

    @classmethod
    def from_options(
        cls, data: list[Path] | None = None, *, resume: bool = False, **options: Any
    ) -> Self:
        """Settings from options, None meaning not given; data folders are needed unless
        the run resumes (see `settings_from_options`)."""
        return settings_from_options(cls, data, resume, **options)


@dataclass
class PretrainRun(Generic[SettingsT]):
    """An open pretraining run, what its steps share: the resolved settings, the last.pt state
    to resume from (None for a new run), the process group, the device, the run folder, whether
    to show progress, where one-line notes go, and when it started."""

    cfg: SettingsT
    state: dict[str, Any] | None
    dist: Dist
    device: torch.device
    dir: Path
    progress: bool
    say: Callable[[str], None]
    started: float

    def write_metrics(self, **metrics: Any) -> None:
        """RUN/metrics.json: `metrics`, then the seconds the run took."""
        runs.write_metrics(self.dir, {**metrics, "seconds": time.perf_counter() - self.started})

    def result(
        self, history: list[dict[str, float]], best_epoch: int, images: int, method: str
    ) -> PretrainResult:
        """What the procedure returns, with the seconds the run took."""
        seconds = time.perf_counter() - self.started
        return PretrainResult(
            self.dir,
            history,
            best_epoch,
            seconds,
            images,
            backbone=self.cfg.backbone,
            method=method,
        )


def run_pretraining(
    kind: str,
    body: Callable[[PretrainRun[Any]], PretrainResult],
    config: Any,
    run_dir: Path,
    resume: bool,
    progress: bool,
    log: Callable[[str], None] | None,
) -> PretrainResult:
    """Open the process group and the run folder of a `lumbar pretrain KIND` run (a new one,
    or with `resume` the one in `run_dir`, whose saved settings win), then run `body` in them.

    Raises:
        UserError: the folder cannot take the run, or a setting is out of range (one line).
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    with process_group() as dist:
        cfg, state = start_run(
            run_dir, config, resume, command=f"lumbar pretrain {kind}",
            saved_settings=saved_settings(kind, run_dir),
        )  # fmt: skip
        device = pick_device(cfg.device)
        return body(
            PretrainRun(cfg, state, dist, device, run_dir, progress, log or _silent, started)
        )


def _silent(line: str) -> None:
    pass


def saved_settings(kind: str, run_dir: Path) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What `lumbar.train.steps.start_run` resumes a pretraining run with: the settings its
    config.json saved under "pretrain", when it is a run of the same procedure.

    Runs written before the one spelling "unlabelled" say "unlabeled" and resume as well.
    """

    def pick(run_config: dict[str, Any]) -> dict[str, Any]:
        saved = run_config.get("pretrain", {})
        found = saved.get("kind")
        if KIND_ALIASES.get(found, found) != kind:
            raise UserError(
                f"{Path(run_dir).name} is not a `lumbar pretrain {kind}` run (it is "
                f"{found or 'something else'}); resume it with its own command"
            )
        return dict(saved["config"])

    return pick


def settings_from_options(
    cls: Callable[..., SettingsT], data: Sequence[str | Path] | None, resume: bool, **options: Any
) -> SettingsT:
    """A procedure's settings from options: None means not given (the default holds); paths
    are kept as text (they go into config.json).

    Raises:
        UserError: no data folder for a new run (a resumed run keeps its own).
    """
    if not data and not resume:
        raise UserError(
            "a data folder is required (an image folder; give several to merge them)",
            option="data",
        )
    values = {k: str(v) if isinstance(v, Path) else v for k, v in options.items() if v is not None}
    return cls(data=[str(path) for path in data or []], **values)


def save_trunk(run_dir: Path, trunk: nn.Module, **extra: Any) -> Path:
    """Write RUN/checkpoint.pt = {"model": {"backbone.<key>": tensor}, **extra} atomically."""
    state = {f"backbone.{k}": v.detach().cpu() for k, v in trunk.state_dict().items()}
    return runs.save_checkpoint(run_dir, {"model": state, **extra})


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


def resume_state(
    state: dict[str, Any] | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    run_dir: Path,
    paths: Sequence[str],
) -> tuple[int, list[dict[str, float]], set[int]]:
    """Restore a last.pt `state` (if any) into `model`, `optimizer` and the RNG.

    Returns:
        The epochs already done, their history rows, and the indices in `paths` of the files
        found unreadable so far (0, [] and an empty set for a new run).
    """
    first_epoch, history, _ = resume_training(state, model, optimizer, run_dir)
    known = set((state or {}).get("unreadable", []))
    bad = {i for i, path in enumerate(paths) if path in known}
    return first_epoch, history, bad


def unreadable_paths(paths: Sequence[str], bad: set[int]) -> list[str]:
    """The paths of the files found unreadable, as last.pt keeps them (resume skips them)."""
    return sorted(paths[i] for i in bad)


def readable(indices: Iterable[int], bad: set[int]) -> np.ndarray:
    """`indices` without the files found unreadable, as int64."""
    return np.array([i for i in indices if i not in bad], dtype=np.int64)


def recalibrate_trunk(
    trunk: nn.Module,
    dataset: ImageFileDataset,
    candidates: Iterable[int],
    bad: set[int],
    cfg: Any,
    device: torch.device,
) -> int:
    """`recalibrate_batchnorm` of `trunk` over up to `cfg.bn_recalibration` readable images
    of `candidates`, drawn with `cfg.seed` and read from `dataset` (un-augmented)."""
    usable = readable(candidates, bad)
    chosen = np.random.default_rng([cfg.seed, 7]).permutation(usable)[: cfg.bn_recalibration]
    return recalibrate_batchnorm(
        trunk.forward_features,
        trunk,
        plain_batches(dataset, chosen, cfg.batch_size, cfg.workers, device),
    )


def check_settings(cfg: Any, *checks: tuple[bool, str]) -> None:
    """Check the settings both procedures have, then the procedure's own `checks`.

    Raises:
        UserError: one line naming the first bad value.
    """
    if isinstance(cfg.data, str):
        cfg.data = [cfg.data]
    common = [
        ("data", bool(cfg.data), "give at least one data folder"),
        ("backbone", cfg.backbone in list_backbones(),
         f"unknown backbone {cfg.backbone!r}; choose one of {', '.join(list_backbones())}"),
        ("epochs", cfg.epochs >= 1, f"epochs must be at least 1, got {cfg.epochs}"),
        ("lr", cfg.lr > 0 and math.isfinite(cfg.lr), f"lr must be positive, got {cfg.lr}"),
        ("input_size", cfg.input_size is None or cfg.input_size >= 16,
         f"input_size must be at least 16 pixels, got {cfg.input_size}"),
        ("workers", cfg.workers >= 0, f"workers must be 0 or more, got {cfg.workers}"),
        ("precision", cfg.precision in ("auto", "fp32", "bf16"),
         f"precision must be auto, fp32 or bf16, got {cfg.precision!r}"),
        ("max_images", cfg.max_images is None or cfg.max_images >= 2,
         f"max_images must be at least 2, got {cfg.max_images}"),
        ("bn_recalibration", cfg.bn_recalibration >= 0,
         f"bn_recalibration must be 0 or more images, got {cfg.bn_recalibration}"),
    ]  # fmt: skip
    for option, ok, message in [*common, *checks]:
        if not ok:
            raise UserError(message, option=option)
