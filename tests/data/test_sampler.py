"""The one batch sampler: seeded global batches, cut to each process's share."""

from __future__ import annotations

import numpy as np
import pytest

from lumbar.data.sampler import EpochBatchSampler


def test_shuffled_batches_depend_on_seed_and_epoch_only() -> None:
    sampler = EpochBatchSampler(10, 4, shuffle=True, seed=3)
    first, second = list(sampler), list(sampler)  # each pass is the next epoch
    assert [len(b) for b in first] == [4, 4, 2]
    assert all(epoch == 0 for batch in first for epoch, _ in batch)
    assert all(epoch == 1 for batch in second for epoch, _ in batch)
    order = np.random.default_rng([3, 0]).permutation(10)  # the training loop's order
    assert [i for batch in first for _, i in batch] == order.tolist()
    again = EpochBatchSampler(10, 4, shuffle=True, seed=3, epoch=1)
    assert list(again) == second
    assert sorted(i for batch in second for _, i in batch) == list(range(10))


def test_a_subset_in_order_for_validation() -> None:
    sampler = EpochBatchSampler([7, 2, 9], 2, shuffle=False, epoch=5)
    assert list(sampler) == [[(5, 7), (5, 2)], [(5, 9)]]
    assert len(sampler) == 2


def test_processes_share_every_global_batch() -> None:
    shares = [EpochBatchSampler(9, 4, shuffle=True, seed=1, rank=r, world=2) for r in (0, 1)]
    batches = [list(s) for s in shares]
    glob = EpochBatchSampler(9, 4, shuffle=True, seed=1).global_batches(0)
    for k, batch in enumerate(glob):
        mine = [i for _, i in batches[0][k]] + [i for _, i in batches[1][k]]
        assert sorted(mine) == sorted(batch.tolist())
        assert [i for _, i in batches[0][k]] == batch[0::2].tolist()


def test_drop_last_keeps_a_lone_short_batch() -> None:
    assert [len(b) for b in EpochBatchSampler(10, 4, shuffle=False, drop_last=True)] == [4, 4]
    assert [len(b) for b in EpochBatchSampler(3, 4, shuffle=False, drop_last=True)] == [3]


def test_batch_size_is_checked() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        EpochBatchSampler(3, 0, shuffle=False)
