"""Disc centres in patient coordinates: what geometric axial selection and the disc ROI need.

A `DiscCentreSource` is any callable that, given a study's sagittal T2 series, returns the
centres of the discs it finds (`DiscCentre`: level name, patient mm, confidence). Two exist:
`CsvDiscCentres` reads centres known beforehand (the phantom's true discs.csv, or any table
keyed by StudyInstanceUID), and `LocaliserSource` runs the learnt sagittal localiser
(`lumbar.localize`) on the series' images.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lumbar.errors import UserError
from lumbar.grading import SPINE_LEVELS

DISC_CSV_REQUIRED = ("study_uid", "level", "x_mm", "y_mm", "z_mm")


@dataclass(frozen=True)
class DiscCentre:
    """One disc's centre: `level` from `grading.SPINE_LEVELS`, `xyz_mm` patient coordinates
    (LPS, mm), `confidence` in [0, 1] (1 for centres known beforehand)."""

    level: str
    xyz_mm: np.ndarray
    confidence: float


@dataclass(frozen=True)
class SagittalSeries:
    """What a source is given: the study, and the sagittal T2 series' local files (may be
    empty, e.g. for a DICOMweb source)."""

    study_uid: str
    series_uid: str
    paths: tuple[Path, ...] = field(default=())


DiscCentreSource = Callable[[SagittalSeries], list[DiscCentre]]


def spine_order(centres: list[DiscCentre]) -> list[DiscCentre]:
    """Centres from the head down (T9-T10 ... L5-S1), as `grading.SPINE_LEVELS` lists them."""
    rank = {name: i for i, name in enumerate(SPINE_LEVELS)}
    return sorted((c for c in centres if c.level in rank), key=lambda c: rank[c.level])


class CsvDiscCentres:
    """Disc centres read from a CSV with columns study_uid, level, x_mm, y_mm, z_mm and an
    optional confidence (the phantom's discs.csv has this form).

    Raises:
        UserError: the file is missing, lacks a column, or has a bad number or level.
    """

    name = "file"

    def __init__(self, path: Path) -> None:
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = [c for c in DISC_CSV_REQUIRED if c not in (reader.fieldnames or ())]
                if missing:
                    raise UserError(
                        f"{path.name}: disc centres need column(s) {', '.join(missing)}",
                        option="disc_centres",
                    )
                rows = list(reader)
        except OSError as err:
            raise UserError(
                f"{path.name}: cannot read disc centres ({err.strerror or type(err).__name__})",
                option="disc_centres",
            ) from None
        self._by_study: dict[str, list[DiscCentre]] = {}
        for line, row in enumerate(rows, start=2):
            if row["level"] not in SPINE_LEVELS:
                raise UserError(
                    f"{path.name} line {line}: unknown disc level {row['level']!r}",
                    option="disc_centres",
                )
            try:
                xyz = np.array([float(row[k]) for k in ("x_mm", "y_mm", "z_mm")])
                confidence = float(row.get("confidence") or 1.0)
            except ValueError:
                raise UserError(
                    f"{path.name} line {line}: x_mm, y_mm, z_mm must be numbers",
                    option="disc_centres",
                ) from None
            if not all(math.isfinite(v) for v in xyz):
                raise UserError(
                    f"{path.name} line {line}: coordinates must be finite", option="disc_centres"
                )
            self._by_study.setdefault(row["study_uid"], []).append(
                DiscCentre(row["level"], xyz, confidence)
            )

    def __call__(self, series: SagittalSeries) -> list[DiscCentre]:
        """The study's centres (none when the file does not list the study)."""
        return list(self._by_study.get(series.study_uid, []))


class LocaliserSource:
    """The learnt sagittal disc localiser (`lumbar.localize`: its bundled weights, or a `lumbar
    localize train` run's) as a `DiscCentreSource`.

    It is loaded on the first series that needs it (it brings torch, which an ingest that never
    needs disc centres should not pay for), and once: a load failure is raised again for every
    later series without retrying. Any failure on a series is a UserError, so that the ingest
    reports it for that patient and goes on.
    """

    name = "localizer"

    def __init__(self, model: Path | None = None) -> None:
        self.model = model
        self._source: DiscCentreSource | None = None
        self._failure: UserError | None = None

    def __call__(self, series: SagittalSeries) -> list[DiscCentre]:
        """The discs the localiser finds and names on the series (none without files)."""
        if self._source is None:
            if self._failure is not None:
                raise self._failure
            # Imported here, not at the top: lumbar.localize imports torch.
            from lumbar.localize import LocalizerDiscCentres, default_localizer, load_localizer

            try:
                localizer = (
                    default_localizer() if self.model is None else load_localizer(self.model)
                )
            except UserError as err:
                self._failure = UserError(f"the disc localiser cannot be loaded: {err}")
                raise self._failure from None
            self._source = LocalizerDiscCentres(localizer)
        try:
            return self._source(series)
        except UserError:
            raise
        except Exception as err:  # a damaged image must not stop the other patients
            raise UserError(
                f"the disc localiser failed on this series ({type(err).__name__})"
            ) from None
