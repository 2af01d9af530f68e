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
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from lumbar import runs
from lumbar.errors import UserError
from lumbar.models import list_backbones
from lumbar.pretrain.dataset import ImageFileDataset, plain_batches
from lumbar.train.runtime import Dist, init_distributed

__all__ = [
    "PretrainResult",
    "begin_run",
    "check_settings",
    "open_run",
    "readable",
    "recalibrate_batchnorm",
    "recalibrate_trunk",
    "resume_state",
    "save_last_state",
    "save_trunk",
]

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
    run_config, state = runs.open_run_folder(run_dir, resume, f"lumbar pretrain {kind}")
    if run_config is None:
        return config, None
    saved = run_config.get("pretrain", {})
    if saved.get("kind") != kind:
        raise UserError(
            f"{Path(run_dir).name} is not a `lumbar pretrain {kind}` run (it is "
            f"{saved.get('kind', 'something else')}); resume it with its own command"
        )
    values = dict(saved["config"])
    values["epochs"] = max(int(values["epochs"]), int(getattr(config, "epochs", 0) or 0))
    return type(config)(**values), state


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


def begin_run(
    run_dir: Path, config: ConfigT, resume: bool, kind: str
) -> tuple[ConfigT, dict[str, Any] | None, Dist]:
    """Join torchrun, open the run folder (`open_run`), check the settings, set CPU threads.

    Returns:
        The resolved config, the last.pt state to resume from (or None) and the process info.
    """
    dist = init_distributed()
    opened, state = open_run(run_dir, config, resume, kind)
    cfg: Any = opened.resolved()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    return cfg, state, dist


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
    if state is None:
        return 0, [], set()
    first_epoch = runs.restore_training_state(state, model, optimizer)
    known = set(state.get("unreadable", []))
    bad = {i for i, path in enumerate(paths) if path in known}
    return first_epoch, runs.read_history(run_dir)[:first_epoch], bad


def save_last_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    paths: Sequence[str],
    bad: set[int],
    **extra: Any,
) -> None:
    """RUN/last.pt after `epoch`: training state, `extra`, and the unreadable files' paths."""
    unreadable = sorted(paths[i] for i in bad)
    runs.save_training_state(run_dir, model, optimizer, epoch, **extra, unreadable=unreadable)


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
        (bool(cfg.data), "give at least one --data folder"),
        (cfg.backbone in list_backbones(),
         f"unknown backbone {cfg.backbone!r}; choose one of {', '.join(list_backbones())}"),
        (cfg.epochs >= 1, f"--epochs must be at least 1, got {cfg.epochs}"),
        (cfg.lr > 0 and math.isfinite(cfg.lr), f"--lr must be positive, got {cfg.lr}"),
        (cfg.input_size is None or cfg.input_size >= 16,
         f"--input-size must be at least 16 pixels, got {cfg.input_size}"),
        (cfg.workers >= 0, f"--workers must be 0 or more, got {cfg.workers}"),
        (cfg.precision in ("auto", "fp32", "bf16"),
         f"precision must be auto, fp32 or bf16, got {cfg.precision!r}"),
        (cfg.max_images is None or cfg.max_images >= 2,
         f"--max-images must be at least 2, got {cfg.max_images}"),
        (cfg.bn_recalibration >= 0,
         f"bn_recalibration must be 0 or more images, got {cfg.bn_recalibration}"),
    ]  # fmt: skip
    for ok, message in [*common, *checks]:
        if not ok:
            raise UserError(message)
