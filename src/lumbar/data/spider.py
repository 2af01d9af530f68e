"""The SPIDER sagittal set (`../shared/data/spider-sagittal/`): slices, boxed discs, folds.

One reader for everything trained or measured on it (the disc localiser, the sagittal grader,
their benchmarks), so that every figure uses the same discs and the same patient-grouped folds.
SPIDER: van der Graaf et al., Sci Data 11:264 (2024), doi:10.1038/s41597-024-03090-w, CC BY 4.0.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumbar.data.splits import greedy_group_assignment, seed_sequence
from lumbar.errors import UserError
from lumbar.grading import SPINE_LEVELS, sagittal_abnormal

#: How the set is cited wherever its images, or anything trained on them, appear.
SPIDER_CREDIT = (
    "SPIDER lumbar spine MRI, van der Graaf et al., Sci Data 11:264 (2024), "
    "doi:10.1038/s41597-024-03090-w, CC BY 4.0"
)
GRADE_COLUMNS = (
    "pfirrmann",
    "herniation",
    "bulging",
    "narrowing",
    "modic",
    "up_endplate",
    "low_endplate",
    "spondylolisthesis",
)
#: The columns read_spider needs (the sets' other columns are not read).
SERIES_COLUMNS = ("image", "pixel_spacing_row_mm", "pixel_spacing_col_mm")
DISC_COLUMNS = (
    "image",
    "patient_id",
    "sequence",
    "level",
    "x0",
    "y0",
    "x1",
    "y1",
    "cx",
    "cy",
    *GRADE_COLUMNS,
)


@dataclass(frozen=True)
class SpiderDisc:
    """One boxed disc: its level, box and centre in image pixels, and SPIDER's gradings."""

    level: str
    box: tuple[float, float, float, float]
    centre: tuple[float, float]
    grades: dict[str, int]

    @property
    def abnormal(self) -> bool:
        """Pfirrmann >= 4, or bulging, or herniation (`lumbar.grading.sagittal_abnormal`)."""
        g = self.grades
        return sagittal_abnormal(g["pfirrmann"], g["bulging"], g["herniation"])


@dataclass(frozen=True)
class SpiderSlice:
    """One mid-sagittal slice with every disc on it, top to bottom."""

    image: Path
    patient: str
    sequence: str
    spacing_mm: tuple[float, float]
    discs: tuple[SpiderDisc, ...]


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The rows of one CSV with their line numbers; UserError naming the columns it lacks."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing columns {', '.join(missing)}")
        return [(reader.line_num, row) for row in reader]


def read_spider(root: Path) -> list[SpiderSlice]:
    """Every slice of the set under `root`, in file order, discs sorted top to bottom.

    Raises:
        UserError: `root` is not a spider-sagittal folder (no discs.csv / series.csv), a CSV
            lacks columns or holds a bad number, or discs.csv has no disc.
    """
    root = Path(root)
    discs_csv, series_csv = root / "discs.csv", root / "series.csv"
    if not discs_csv.is_file() or not series_csv.is_file():
        raise UserError(f"{root} is not a spider-sagittal folder (discs.csv and series.csv)")
    spacing: dict[str, tuple[float, float]] = {}
    for line, row in _rows(series_csv, SERIES_COLUMNS):
        try:
            spacing[row["image"]] = (
                float(row["pixel_spacing_row_mm"]),
                float(row["pixel_spacing_col_mm"]),
            )
        except ValueError as err:
            raise UserError(f"{series_csv} line {line}: {err}") from None
    by_image: dict[str, list[SpiderDisc]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for line, row in _rows(discs_csv, DISC_COLUMNS):
        if row["level"] not in SPINE_LEVELS:
            raise UserError(f"{discs_csv}: unknown level {row['level']!r}")
        try:
            disc = SpiderDisc(
                level=row["level"],
                box=(float(row["x0"]), float(row["y0"]), float(row["x1"]), float(row["y1"])),
                centre=(float(row["cx"]), float(row["cy"])),
                grades={c: int(row[c]) for c in GRADE_COLUMNS},
            )
        except ValueError as err:
            raise UserError(f"{discs_csv} line {line}: {err}") from None
        by_image.setdefault(row["image"], []).append(disc)
        meta[row["image"]] = (row["patient_id"], row["sequence"])
    if not by_image:
        raise UserError(f"{root}: no usable slices in discs.csv")
    slices = []
    for image, discs in by_image.items():
        discs.sort(key=lambda d: SPINE_LEVELS.index(d.level))
        patient, sequence = meta[image]
        slices.append(
            SpiderSlice(
                root / image, patient, sequence, spacing.get(image, (1.0, 1.0)), tuple(discs)
            )
        )
    return slices


def spider_folds(slices: list[SpiderSlice], folds: int = 5, seed: int = 0) -> dict[str, int]:
    """Patient-grouped folds stratified on abnormal discs: patient id -> fold 0..folds-1.

    A patient's T1, T2 and T2-SPACE slices share SPIDER's gradings, so they always share a fold.
    Fold k is the test fold of round k and fold (k + 1) % folds its validation fold.
    """
    patients: dict[str, int] = {}
    for s in slices:
        patients.setdefault(s.patient, len(patients))
    counts = np.zeros((len(patients), 2), dtype=np.int64)
    seen: set[tuple[str, str]] = set()
    for s in slices:
        for d in s.discs:
            if (s.patient, d.level) not in seen:  # a disc counts once however many slices show it
                seen.add((s.patient, d.level))
                counts[patients[s.patient], int(d.abnormal)] += 1
    rng = np.random.default_rng(seed_sequence(seed, "fold"))
    assignment = greedy_group_assignment(counts, [1.0 / folds] * folds, rng)
    return {p: int(assignment[g]) for p, g in patients.items()}
