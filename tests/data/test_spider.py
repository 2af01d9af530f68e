"""The SPIDER reader: every disc read, named top to bottom, folds grouped by patient."""

from __future__ import annotations

import re

import pytest
from helpers.shared_data import SHARED_DATA

from lumbar.data.spider import GRADE_COLUMNS, read_spider, spider_folds
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


SERIES_HEADER = "image,pixel_spacing_row_mm,pixel_spacing_col_mm\n"


@pytest.mark.parametrize(
    ("discs", "series", "match"),
    [
        ("", "", "series.csv: missing columns image, pixel_spacing_row_mm"),
        ("", SERIES_HEADER, "discs.csv: missing columns image, patient_id"),
        ("image,level\n", SERIES_HEADER, "discs.csv: missing columns patient_id, sequence, x0"),
        ("image,patient_id\n", "image\n", "series.csv: missing columns pixel_spacing_row_mm"),
    ],
)
def test_empty_or_short_csvs_name_the_missing_columns(
    tmp_path, discs: str, series: str, match: str
) -> None:
    (tmp_path / "discs.csv").write_text(discs)
    (tmp_path / "series.csv").write_text(series)
    with pytest.raises(UserError, match=match):
        read_spider(tmp_path)


def test_a_header_only_discs_csv_has_no_usable_slices(tmp_path) -> None:
    columns = ["image", "patient_id", "sequence", "level", "x0", "y0", "x1", "y1", "cx", "cy"]
    columns += list(GRADE_COLUMNS)
    (tmp_path / "discs.csv").write_text(",".join(columns) + "\n")
    (tmp_path / "series.csv").write_text(SERIES_HEADER)
    with pytest.raises(
        UserError, match=f"^{re.escape(str(tmp_path))}: no usable slices in discs.csv$"
    ):
        read_spider(tmp_path)


def test_a_bad_number_is_one_line(tmp_path) -> None:
    (tmp_path / "discs.csv").write_text("x\n")
    (tmp_path / "series.csv").write_text(SERIES_HEADER + "a.png,wide,0.5\n")
    with pytest.raises(UserError, match=r"series\.csv line 2: "):
        read_spider(tmp_path)
