"""Helpers for pretraining under `torchrun`: gathering Python objects and embeddings.

Process-group setup, device choice and sums are `lumbar.train.runtime`'s (`init_distributed`,
`pick_device`, `all_reduce`); this module adds what pretraining needs beyond them.
"""

from __future__ import annotations

from typing import Any

import torch

from lumbar.models.preprocessing import Preprocessing

__all__ = ["all_gather_objects", "dummy_batch", "gather_rows", "merge_unreadable"]


def all_gather_objects(obj: Any) -> list[Any]:
    """`obj` of every process, in rank order (picklable objects, e.g. lists of indices)."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def dummy_batch(preprocessing: Preprocessing) -> torch.Tensor:
    """One blank input, for a process whose share of a batch was all unreadable files: it
    still runs forward and backward (with weight 0) so DDP's gradient exchange does not hang."""
    height, width = preprocessing.input_size
    return torch.zeros(1, preprocessing.num_channels, height, width)


class _GatherRows(torch.autograd.Function):
    """all_gather forward; backward sums every process's gradient of the gathered tensor and
    returns this process's slice (works on gloo, which lacks reduce_scatter)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        ctx.rank = dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate the (n_r, d) tensors of all processes, keeping gradients to the local rows.

    Processes may hold different n_r (unreadable files): rows are padded to the largest count
    for the collective and the padding is dropped again. The backward sums the gradients every
    process computes for this process's rows, so a loss computed identically on every process,
    with DDP's gradient averaging, gives exactly the gradient of that loss on one process.
    """
    import torch.distributed as dist

    counts = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
    sizes = [torch.zeros_like(counts) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, counts)
    n = [int(s.item()) for s in sizes]
    if max(n) > x.shape[0]:
        x = torch.cat([x, x.new_zeros(max(n) - x.shape[0], *x.shape[1:])])
    parts = _GatherRows.apply(x)
    return torch.cat([part[:count] for part, count in zip(parts, n, strict=True)])


def merge_unreadable(bad: set[int], dist_info: Any) -> set[int]:
    """The unreadable files found by any process, so that all processes skip the same files
    (and so walk the same global batches) in later epochs."""
    if not dist_info.active:
        return bad
    merged: set[int] = set()
    for part in all_gather_objects(sorted(bad)):
        merged.update(part)
    return merged
