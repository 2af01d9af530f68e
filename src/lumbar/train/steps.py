"""The steps every training loop of `lumbar` shares: `lumbar.train` and both pretraining
procedures (`lumbar.pretrain`) start, resume, weigh, step, keep and save epochs the same way.

- `start_run` opens the run folder (`lumbar.runs`) for a new run or a resumed one, settles the
  settings (a resumed run keeps its own; a larger `epochs` extends it) and torch's threads;
- `resume_training` restores last.pt into the model and optimiser and reads the history;
- `inverse_frequency_weights` and `weighted_step` are the class-weighted loss and one step of
  it over a global batch (the same gradients with one process or many);
- `BestEpoch` keeps the lowest validation loss and the epochs since it fell (early stopping);
- `save_epoch` writes last.pt and history.csv after an epoch (the main process only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lumbar import runs
from lumbar.train.runtime import Dist

__all__ = [
    "BestEpoch",
    "inverse_frequency_weights",
    "resume_training",
    "save_epoch",
    "start_run",
    "weighted_step",
]


class RunSettings(Protocol):
    """What `start_run` needs of a settings dataclass (`TrainConfig`, the pretraining ones)."""

    epochs: Any
    threads: int | None

    def resolved(self) -> Any: ...


SettingsT = TypeVar("SettingsT", bound=RunSettings)


def start_run(
    run_dir: Path,
    config: SettingsT,
    resume: bool,
    *,
    command: str,
    saved_settings: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[SettingsT, dict[str, Any] | None]:
    """Open `run_dir` for a new run, or with `resume` for the run in it, and settle the settings.

    Args:
        config: the settings asked for.
        resume: continue the run in `run_dir`: its saved settings hold (`saved_settings` picks
            them from its config.json, and may refuse a run of another kind), and a larger
            `config.epochs` extends it.
        command: what makes such a run, for the message when there is nothing to resume.

    Returns:
        The resolved settings and the last.pt state to resume from (None for a new run).

    Raises:
        UserError: the folder cannot take the run, or a setting is out of range.
    """
    saved, state = runs.open_run_folder(run_dir, resume, command)
    if saved is not None:
        values = dict(saved_settings(saved))
        values["epochs"] = max(int(values["epochs"]), int(config.epochs or 0))
        config = type(config)(**values)
    cfg = config.resolved()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    return cfg, state


@dataclass
class BestEpoch:
    """The kept epoch: the lowest validation loss so far, and the epochs since it fell."""

    loss: float = math.inf
    epoch: int = 0
    stale: int = 0

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> BestEpoch:
        """The record saved in a last.pt state (a fresh one for None or a run without it)."""
        if state is None or "best_epoch" not in state:
            return cls()
        return cls(
            float(state["best_val_loss"]), int(state["best_epoch"]), int(state.get("stale", 0))
        )

    def update(self, epoch: int, loss: float) -> bool:
        """Record `epoch`'s validation loss; True when it is the lowest so far (keep it)."""
        if loss < self.loss:
            self.loss, self.epoch, self.stale = loss, epoch, 0
            return True
        self.stale += 1
        return False

    def state(self) -> dict[str, Any]:
        """What last.pt keeps of it."""
        return {"best_val_loss": self.loss, "best_epoch": self.epoch, "stale": self.stale}


def resume_training(
    state: dict[str, Any] | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    run_dir: Path,
) -> tuple[int, list[dict[str, float]], BestEpoch]:
    """Restore a last.pt `state` (if any) into `model`, `optimizer` and the RNG.

    Returns:
        The epochs already done, their history rows and the kept-epoch record (0, [] and a
        fresh record for a new run).
    """
    if state is None:
        return 0, [], BestEpoch()
    first_epoch = runs.restore_training_state(state, model, optimizer)
    return first_epoch, runs.read_history(run_dir)[:first_epoch], BestEpoch.from_state(state)


def save_epoch(
    run_dir: Path,
    dist: Dist,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    history: list[dict[str, float]],
    fields: Sequence[str],
    **extra: Any,
) -> None:
    """After `epoch`: RUN/last.pt (with `extra`) and RUN/history.csv, on the main process."""
    if dist.main:
        runs.save_training_state(run_dir, model, optimizer, epoch, **extra)
        runs.write_history(run_dir, history, fields)


def inverse_frequency_weights(counts: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights n / (C x n_c) (scikit-learn's "balanced"); 0 for absent."""
    counts = counts.astype(np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def weighted_step(
    optimizer: torch.optim.Optimizer,
    logits: torch.Tensor,
    y: torch.Tensor,
    class_weights: torch.Tensor,
    norm: torch.Tensor,
    world: int,
    scale: float = 1.0,
) -> tuple[float, float, float]:
    """One optimiser step on the class-weighted cross-entropy of this process's `logits`.

    The loss is the global batch's weighted mean: `norm` is the summed class weight of the
    whole global batch, and DDP averages gradients over the `world` processes. `scale` (0 or 1)
    weights every image of the batch (0: a placeholder batch that only keeps DDP in step).

    Returns:
        This batch's weighted loss sum, correct predictions and summed weight.
    """
    per_image = F.cross_entropy(logits, y, reduction="none") * class_weights[y] * scale
    loss = per_image.sum() / norm.clamp_min(1e-12) * world
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return (
        float(per_image.sum().detach()),
        float(((logits.argmax(1) == y).float() * scale).sum()),
        float((class_weights[y] * scale).sum()),
    )
