"""The SPIDER reader: every disc read, named top to bottom, folds grouped by patient."""

from __future__ import annotations

import pytest
from helpers.shared_data import SHARED_DATA

from lumbar.data.spider import read_spider, spider_folds
from lumbar.errors import UserError
from lumbar.grading import SPINE_LEVELS

SPIDER = SHARED_DATA / "spider-sagittal"
needs_spider = pytest.mark.skipif(
    not SPIDER.is_dir(), reason=f"real SPIDER slices not found at {SPIDER}"
)


@needs_spider
def test_reads_every_disc_top_to_bottom() -> None:
    slices = read_spider(SPIDER)
    assert len(slices) == 134
    assert sum(len(s.discs) for s in slices) == 912
    assert len({s.patient for s in slices}) == 84
    for s in slices:
        order = [SPINE_LEVELS.index(d.level) for d in s.discs]
        assert order == sorted(order)
        assert all(d.centre[1] > 0 for d in s.discs)
    assert sum(d.abnormal for s in slices for d in s.discs) == 466  # the README's count


@needs_spider
def test_folds_keep_patients_together_and_balance() -> None:
    slices = read_spider(SPIDER)
    folds = spider_folds(slices)
    assert set(folds.values()) == set(range(5))
    sizes = [sum(1 for f in folds.values() if f == k) for k in range(5)]
    assert max(sizes) - min(sizes) <= 4
    assert spider_folds(slices) == folds  # seeded: the same folds every time


def test_not_a_spider_folder(tmp_path) -> None:
    with pytest.raises(UserError, match="not a spider-sagittal folder"):
        read_spider(tmp_path)
