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


def read_spider(root: Path) -> list[SpiderSlice]:
    """Every slice of the set under `root`, in file order, discs sorted top to bottom.

    Raises:
        UserError: `root` is not a spider-sagittal folder (no discs.csv / series.csv).
    """
    root = Path(root)
    discs_csv, series_csv = root / "discs.csv", root / "series.csv"
    if not discs_csv.is_file() or not series_csv.is_file():
        raise UserError(f"{root} is not a spider-sagittal folder (discs.csv and series.csv)")
    spacing: dict[str, tuple[float, float]] = {}
    with open(series_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            spacing[row["image"]] = (
                float(row["pixel_spacing_row_mm"]),
                float(row["pixel_spacing_col_mm"]),
            )
    by_image: dict[str, list[SpiderDisc]] = {}
    meta: dict[str, tuple[str, str]] = {}
    with open(discs_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["level"] not in SPINE_LEVELS:
                raise UserError(f"{discs_csv}: unknown level {row['level']!r}")
            disc = SpiderDisc(
                level=row["level"],
                box=(float(row["x0"]), float(row["y0"]), float(row["x1"]), float(row["y1"])),
                centre=(float(row["cx"]), float(row["cy"])),
                grades={c: int(row[c]) for c in GRADE_COLUMNS},
            )
            by_image.setdefault(row["image"], []).append(disc)
            meta[row["image"]] = (row["patient_id"], row["sequence"])
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
