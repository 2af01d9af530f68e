"""What every training loop needs at run time: processes, device and precision.

Used by `lumbar.train` and by the pretraining procedures (`lumbar.pretrain`); the run folder
they write (config, checkpoints, resumable state, history) is `lumbar.runs`.

- `process_group` joins the `torchrun` process group (gloo on CPU, nccl on CUDA) for one run
  and leaves it when the run ends well; it gives a `Dist` (rank, world size). `all_reduce`
  sums a tensor over the processes, `wrap_ddp` wraps a module in `DistributedDataParallel`,
  `barrier` waits for every process.
- `pick_device` turns "auto" / "cpu" / "cuda" into a torch device.
- `autocast` runs a block in bf16 when asked, or with "auto" where the hardware has native bf16.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lumbar.errors import UserError

__all__ = [
    "CPU",
    "Dist",
    "all_reduce",
    "autocast",
    "barrier",
    "init_distributed",
    "native_bf16",
    "pick_device",
    "process_group",
    "shutdown_distributed",
    "wrap_ddp",
]

CPU = torch.device("cpu")


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


@contextlib.contextmanager
def process_group() -> Iterator[Dist]:
    """Join the torchrun process group for one run (`init_distributed`), and leave it when the
    run ends well if this call joined it (`shutdown_distributed`).

    After a failure the group is left as it is: the other processes may never reach the
    barrier that leaving waits at.
    """
    import torch.distributed as dist

    joined_here = not (dist.is_available() and dist.is_initialized())
    info = init_distributed()
    yield info
    if joined_here and info.active:
        shutdown_distributed()


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
        raise UserError("device cuda asked for, but torch sees no GPU; use cpu", option="device")
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
