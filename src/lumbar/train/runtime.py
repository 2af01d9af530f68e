"""What every training loop needs at run time: processes, device, precision, resumable state.

Used by `lumbar.train` and by the pretraining procedures (`lumbar.pretrain`):

- `init_distributed` joins the `torchrun` process group (gloo on CPU, nccl on CUDA) and
  returns a `Dist` (rank, world size); `all_reduce` sums a tensor over the processes,
  `wrap_ddp` wraps a module in `DistributedDataParallel`, `barrier` waits for every process.
- `pick_device` turns "auto" / "cpu" / "cuda" into a torch device.
- `autocast` runs a block in bf16 when asked, or with "auto" where the hardware has native bf16.
- `open_run_folder` checks a run folder for a new run or `--resume` and `write_run_config`
  writes its config.json; `save_training_state` / `restore_training_state` write and read
  RUN/last.pt (model, optimiser, RNG and epoch) and `write_history` / `read_history`
  RUN/history.csv, so `--resume` ends as an uninterrupted run would.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lumbar.errors import UserError
from lumbar.files import atomic_path, write_json_atomic
from lumbar.models.weights import RUN_CONFIG

__all__ = [
    "CPU",
    "HISTORY",
    "LAST_STATE",
    "Dist",
    "all_reduce",
    "autocast",
    "barrier",
    "init_distributed",
    "native_bf16",
    "open_run_folder",
    "pick_device",
    "read_history",
    "restore_training_state",
    "save_training_state",
    "shutdown_distributed",
    "wrap_ddp",
    "write_history",
    "write_run_config",
]

CPU = torch.device("cpu")
LAST_STATE = "last.pt"  # RUN/last.pt: the state `--resume` continues from
HISTORY = "history.csv"  # RUN/history.csv: one row per finished epoch


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Dist:
    """This process's place in a `torchrun` job (rank 0 of 1 outside one)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this is the process that writes files and shows progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether there are other processes to exchange with."""
        return self.world > 1


def init_distributed() -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size())


def shutdown_distributed() -> None:
    """Leave the torchrun process group, after a last barrier, before the process exits.

    Without it every process tears its connections down at interpreter exit while the others
    may still use them, which can abort one of them (seen with gloo on a busy machine).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, dist_info: Dist, device: torch.device = CPU) -> torch.Tensor:
    """Sum `tensor` over the processes in place (through `device`: nccl reduces GPU tensors)."""
    if dist_info.active:
        import torch.distributed as dist

        if device.type == "cpu":
            dist.all_reduce(tensor)
        else:
            on_device = tensor.to(device)
            dist.all_reduce(on_device)
            tensor.copy_(on_device.cpu())
    return tensor


def wrap_ddp(module: nn.Module, dist_info: Dist, device: torch.device) -> nn.Module:
    """`module` in `DistributedDataParallel` under torchrun, else `module` itself."""
    if not dist_info.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=None if device.type == "cpu" else [device])


def barrier(dist_info: Dist) -> None:
    """Wait until every process gets here (nothing to wait for outside torchrun)."""
    if dist_info.active:
        import torch.distributed as dist

        dist.barrier()


# --------------------------------------------------------------------------- device


def pick_device(name: str) -> torch.device:
    """The device "auto" (the process's GPU under torchrun, else GPU 0 if any, else CPU),
    "cpu" or "cuda" names.

    Raises:
        UserError: an unknown name, or "cuda" on a machine without a GPU.
    """
    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"device must be auto, cpu or cuda, got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("device cuda asked for, but torch sees no GPU; use --device cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


# --------------------------------------------------------------------------- precision


def native_bf16() -> bool:
    """Whether this machine computes bf16 natively (AMX / AVX512-BF16 on CPU, or a GPU)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(precision: str, device: torch.device) -> Any:
    """A context running in bf16 for "bf16", or for "auto" where bf16 is native; else fp32."""
    use = precision == "bf16" or (precision == "auto" and native_bf16())
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use)


# --------------------------------------------------------------------------- resumable state


def open_run_folder(
    run_dir: Path, resume: bool, command: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Check that `run_dir` can take a new run, or, with `resume`, has one to continue.

    Returns:
        (RUN/config.json, RUN/last.pt state) to resume from; (None, None) for a new run.

    Raises:
        UserError: a non-empty folder (or a file) without `resume`; nothing to resume (the
            message names `command`, e.g. "lumbar train --out", as what makes a run).
    """
    run_dir = Path(run_dir)
    if not resume:
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise UserError(
                f"run folder {run_dir.name} is not empty; choose a new --out, or add --resume "
                "to continue it"
            )
        return None, None
    if not (run_dir / LAST_STATE).is_file() or not (run_dir / RUN_CONFIG).is_file():
        raise UserError(
            f"nothing to resume in {run_dir.name}: it needs {LAST_STATE} and {RUN_CONFIG} from "
            f"an earlier `{command}` (drop --resume to start a new run)"
        )
    saved = json.loads((run_dir / RUN_CONFIG).read_text(encoding="utf-8"))
    state = torch.load(run_dir / LAST_STATE, map_location="cpu", weights_only=True)
    return saved, state


def write_run_config(run_dir: Path, run_config: dict[str, Any], dist_info: Dist) -> None:
    """Create the run folder and write RUN/config.json atomically (the main process only)."""
    if dist_info.main:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(run_dir) / RUN_CONFIG, run_config)


def save_training_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    **extra: Any,
) -> None:
    """RUN/last.pt: model, optimiser and RNG state after `epoch` (plus `extra`), atomically."""
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
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return int(state["epoch"])


def write_history(run_dir: Path, history: list[dict[str, float]], fields: Sequence[str]) -> None:
    """RUN/history.csv, one row per epoch, atomically.

    Values are written with repr, which round-trips exactly, so a resumed run's history equals
    an uninterrupted one's.
    """
    with atomic_path(Path(run_dir) / HISTORY) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        for row in history:
            writer.writerow({k: repr(row[k]) for k in fields})


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
