"""The frozen-prefix cache of `lumbar train`: the output of the frozen leading stages of a
trunk, computed once per image and augmentation variant (see `lumbar.train.loop`).

`compute_prefix` runs stages 0..stop-1 over a dataset, `extend_prefix` derives a deeper prefix
from a shallower one, and a `PrefixCache` (e.g. `lumbar.experiment.cache.DiskPrefixCache`)
shares them between the runs of an experiment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from lumbar.data.dataset import ManifestDataset
from lumbar.models import Classifier
from lumbar.train.runtime import CPU, Dist, all_reduce, autocast

__all__ = [
    "SINGLE_PROCESS",
    "MemoryPrefixCache",
    "PrefixCache",
    "batches",
    "compute_prefix",
    "extend_prefix",
    "layout",
]

SINGLE_PROCESS = Dist()  # a run outside torchrun


def layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """`x` in NHWC memory layout when `channels_last` (a 4-D batch), else as it is."""
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive chunks of `order`, `batch_size` long (the last may be shorter)."""
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _run_stages(
    model: Classifier,
    inputs: Iterable[tuple[int, np.ndarray, torch.Tensor]],
    shape: tuple[int, int],
    start: int,
    stop: int,
    *,
    channels_last: bool,
    precision: str,
    pool: nn.Module | None,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor | None:
    """Stages `start`..`stop - 1` (and `pool`) on each (variant, indices, input) batch.

    Each output is stored at [variant, indices] of a `shape` + (...) float32 tensor in host
    memory; None when `inputs` held no batch. The caller puts `model` in inference mode.
    """
    cache: torch.Tensor | None = None
    for v, chunk, x in inputs:
        with autocast(precision, device):
            out = model.forward_stages(layout(x.to(device), channels_last), start, stop)
            if pool is not None:
                out = pool(out)
        out = out.float().cpu()
        if cache is None:
            cache = torch.zeros((*shape, *out.shape[1:]), dtype=torch.float32)
        cache[v, torch.from_numpy(chunk)] = out
        if progress is not None:
            progress(len(chunk))
    return cache


@torch.no_grad()
def compute_prefix(
    model: Classifier,
    dataset: ManifestDataset,
    stop: int,
    *,
    variants: int,
    batch_size: int,
    channels_last: bool,
    precision: str,
    dist_info: Dist = SINGLE_PROCESS,
    progress: Callable[[int], None] | None = None,
    pool: nn.Module | None = None,
    device: torch.device = CPU,
) -> torch.Tensor:
    """Output of trunk stages 0..stop-1 for every image and variant: (variants, N, ...) float32.

    Variant v of image i is the image as the augmentation draws it in epoch v (no augmentation:
    one variant). Under torchrun each process computes images rank::world and the parts are
    summed into the full cache on every process. The cache lives in host memory. `pool`, when
    given, is applied to the output before it is stored: the head's own pooling when the whole
    trunk is frozen, which is a fixed function too (and idempotent), so the cache holds 1x1 (or
    grid-sized) maps.
    """
    was_training = model.training
    model.eval()
    n = len(dataset)
    mine = np.arange(dist_info.rank, n, dist_info.world)
    images = (
        (v, chunk, dataset.__getitems__([(v, int(i)) for i in chunk]).images)
        for v in range(variants)
        for chunk in batches(mine, batch_size)
    )
    cache = _run_stages(
        model, images, (variants, n), 0, stop, channels_last=channels_last, precision=precision,
        pool=pool, device=device, progress=progress,
    )  # fmt: skip
    if cache is None:  # this process had no image (more processes than images)
        first = model.forward_stages(dataset[0][0][None].to(device), 0, stop)
        shape = (first if pool is None else pool(first)).shape[1:]
        cache = torch.zeros((variants, n, *shape), dtype=torch.float32)
    all_reduce(cache, dist_info, device)
    model.train(was_training)
    return cache


@torch.no_grad()
def extend_prefix(
    model: Classifier,
    base: torch.Tensor,
    start: int,
    stop: int,
    *,
    batch_size: int,
    channels_last: bool,
    precision: str,
    pool: nn.Module | None = None,
    device: torch.device = CPU,
) -> torch.Tensor:
    """`compute_prefix` up to `stop` from a cache `base` of stages 0..start-1 (same images).

    Runs stages `start`..`stop - 1` (and `pool`) on every cached tensor, in the batches
    `compute_prefix` uses, so a deeper prefix is derived from a shallower one without decoding
    or recomputing the first stages (a frozen run reusing its fine-tuning twin's cache).
    """
    was_training = model.training
    model.eval()
    variants, n = base.shape[:2]
    cached = (
        (v, chunk, base[v, torch.from_numpy(chunk)])
        for v in range(variants)
        for chunk in batches(np.arange(n), batch_size)
    )
    cache = _run_stages(
        model, cached, (variants, n), start, stop, channels_last=channels_last,
        precision=precision, pool=pool, device=device,
    )  # fmt: skip
    model.train(was_training)
    assert cache is not None
    return cache


class PrefixCache(Protocol):
    """Where `train` may get its frozen-prefix cache instead of computing it (see `train`).

    `fetch` returns the (variants, N, ...) tensor `compute_prefix(model, dataset, stop, ...)`
    would return; `compute(stop, pool)` computes it (or a shallower prefix, for a store that
    keeps intermediate stages) and `extend(base, start, stop, pool)` derives a deeper prefix
    from a shallower one. `lumbar.experiment.cache.DiskPrefixCache` shares it between runs.
    """

    def fetch(
        self,
        model: Classifier,
        dataset: ManifestDataset,
        *,
        stop: int,
        pool: nn.Module | None,
        variants: int,
        settings: dict[str, Any],
        compute: Callable[[int, nn.Module | None], torch.Tensor],
        extend: Callable[[torch.Tensor, int, int, nn.Module | None], torch.Tensor],
    ) -> torch.Tensor: ...


class MemoryPrefixCache:
    """A `PrefixCache` in memory, for runs of one process on the same images: the weight-decay
    candidates of `--recipe regularized` compute the frozen prefix once between them.

    Keyed by the dataset's images, labels and description, the stop stage, the pooling, the
    variant count, the settings and the state of the cached stages, so a different trunk or
    split never gets another's tensor.
    """

    def __init__(self) -> None:
        self._store: dict[tuple[Any, ...], torch.Tensor] = {}

    @staticmethod
    def _key(
        model: Classifier, dataset: ManifestDataset, stop: int, pool: nn.Module | None,
        variants: int, settings: dict[str, Any],
    ) -> tuple[Any, ...]:  # fmt: skip
        h = hashlib.sha256()
        h.update("\n".join(str(p) for p in dataset.paths).encode())
        h.update(np.asarray(dataset.labels).tobytes())
        h.update(json.dumps(dataset.describe(), sort_keys=True, default=str).encode())
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        for _, stage in model.stages()[:stop]:
            for tensor in stage.state_dict().values():
                h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
        return (h.hexdigest(), stop, repr(pool), variants)

    def fetch(
        self,
        model: Classifier,
        dataset: ManifestDataset,
        *,
        stop: int,
        pool: nn.Module | None,
        variants: int,
        settings: dict[str, Any],
        compute: Callable[[int, nn.Module | None], torch.Tensor],
        extend: Callable[[torch.Tensor, int, int, nn.Module | None], torch.Tensor],
    ) -> torch.Tensor:
        """The cached tensor, computed on first use."""
        key = self._key(model, dataset, stop, pool, variants, settings)
        if key not in self._store:
            self._store[key] = compute(stop, pool)
        return self._store[key]
