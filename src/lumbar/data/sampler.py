"""The one batch sampler of `lumbar`: seeded global batches of `(epoch, index)` keys.

`make_loader` (`lumbar.data.dataset`), the training loop (`lumbar.train.loop`) and the
pretraining loops (`lumbar.pretrain`) all draw their batches here, so shuffling depends only on
(seed, epoch) and under `torchrun` every process walks the same global batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["EpochBatchSampler"]


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Global batches of a seeded permutation, each cut to this process's share.

    Each pass yields the batches of one epoch as lists of `(epoch, index)` keys, then moves
    on to the next epoch. Sending the epoch with each key makes augmentation independent of
    loader worker processes (which hold their own copy of the dataset). Under torchrun every
    process walks the same global order and process `rank` of `world` takes every `world`-th
    image of each global batch, so one global batch is one optimiser step of all processes.

    Args:
        indices: the images to draw from: a count n (images 0..n-1), or a sequence (e.g. a
            split without its unreadable files).
        batch_size: images per global batch.
        shuffle: permute with (seed, epoch) (training), or keep the order (validation).
        drop_last: leave out a last global batch smaller than `batch_size`, unless it is the
            only one (contrastive losses need full batches).
        seed: seeds the permutation together with the epoch.
        epoch: the first epoch (e.g. to resume); `set_epoch` changes it.
        rank, world: this process's place in a torchrun job.
    """

    def __init__(
        self,
        indices: int | Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool = False,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(indices, int):
            indices = np.arange(indices)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = int(epoch)
        self.rank = rank
        self.world = world

    def set_epoch(self, epoch: int) -> None:
        """Start the next pass at `epoch` (to resume a run)."""
        self.epoch = int(epoch)

    def global_batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """The global batches of `epoch` (default: the next pass's), the same on every process."""
        epoch = self.epoch if epoch is None else epoch
        order = self.indices
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, epoch]).permutation(len(order))]
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This process's share of a global batch."""
        return batch[self.rank :: self.world]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        self.epoch += 1
        for batch in self.global_batches(epoch):
            yield [(epoch, int(i)) for i in self.shard(batch)]

    def __len__(self) -> int:
        return len(self.global_batches())
