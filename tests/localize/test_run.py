"""`lumbar localize train` / `cv` on a small SPIDER-like folder: the run folder's contract."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from helpers.shared_data import SPIDER
from typer.testing import CliRunner

from lumbar.cli import app
from lumbar.localize import load_localizer

pytestmark = [
    pytest.mark.skipif(not SPIDER.is_dir(), reason=f"shared data absent: {SPIDER}"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def small_spider(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 patients of the set (each with its slices), so five folds each hold someone."""
    root = tmp_path_factory.mktemp("spider")
    (root / "images").mkdir()
    with open(SPIDER / "series.csv", newline="") as handle:
        series = list(csv.DictReader(handle))
    patients = sorted({r["patient_id"] for r in series})[:10]
    keep = [r for r in series if r["patient_id"] in patients]
    for name in ("series.csv", "discs.csv"):
        with open(SPIDER / name, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [r for r in reader if r["patient_id"] in patients]
            fields = reader.fieldnames
        with open(root / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    for r in keep:
        shutil.copy(SPIDER / r["image"], root / r["image"])
    return root


def test_train_then_cv_write_a_loadable_run(small_spider: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--data", str(small_spider), "--out", str(run), "--steps", "1"]
    args += ["--phantoms", "2", "--negatives", "2", "--no-final"]
    result = CliRunner().invoke(app, ["localize", "train", *args])
    assert result.exit_code == 0, result.output
    for k in range(5):
        assert (run / f"fold-{k}" / "outputs.npz").is_file()
    assert not (run / "final").exists()
    localizer = load_localizer(run)
    assert localizer.meta["weights"] == "fold-0"
    result = CliRunner().invoke(
        app, ["localize", "cv", str(run), "--data", str(small_spider), "--resamples", "50"]
    )
    assert result.exit_code == 0, result.output
    with open(run / "cv.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["figure"] for r in rows} == {"found_named", "median_error_mm", "slices_all_right"}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows if r["figure"] != "median_error_mm")
    with open(run / "oof.csv", newline="") as handle:
        assert set(next(csv.reader(handle))) == {"image", "level", "x", "y", "confidence", "fold"}
