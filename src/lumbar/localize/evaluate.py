"""How well discs were found and named: per true disc, per slice, pooled with patient intervals.

A true disc counts as found and named when a found disc carries its level and lies within
half the local disc spacing of its centre (the mean distance to its true neighbours on the
slice). A slice is all right when every true disc on it is. Errors in mm use the slice's
pixel spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lumbar.localize.data import Sample
from lumbar.localize.decode import Disc
from lumbar.metrics import bootstrap_statistic


@dataclass(frozen=True)
class DiscResult:
    """One true disc: its level, whether found and named, distance to the disc named so."""

    image: str
    patient: str
    sequence: str
    level: str
    right: bool
    error_mm: float  # to the found disc of that level; NaN when none carries it


def local_half_spacing(points: np.ndarray) -> np.ndarray:
    """Half the mean distance from each true disc to its neighbours along the slice."""
    if len(points) < 2:
        return np.full(len(points), np.inf)
    gaps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    before = np.concatenate([[np.nan], gaps])
    after = np.concatenate([gaps, [np.nan]])
    return np.nanmean(np.stack([before, after]), axis=0) / 2


def score_slice(sample: Sample, discs: list[Disc]) -> list[DiscResult]:
    """Match one slice's found discs to its true discs by level."""
    by_level = {d.level: d for d in discs if d.level is not None}
    sy, sx = sample.spacing_mm or (1.0, 1.0)
    tolerance = local_half_spacing(sample.points)
    results = []
    for (x, y), level, tol in zip(sample.points, sample.levels, tolerance, strict=True):
        found = by_level.get(level)
        if found is None:
            results.append(
                DiscResult(sample.name, sample.patient, sample.sequence, level, False, np.nan)
            )
            continue
        dx, dy = found.x - x, found.y - y
        right = bool(np.hypot(dx, dy) <= tol)
        error = float(np.hypot(dx * sx, dy * sy))
        results.append(
            DiscResult(sample.name, sample.patient, sample.sequence, level, right, error)
        )
    return results


def summarise(results: list[DiscResult], resamples: int = 2000) -> dict[str, dict[str, float]]:
    """Per sequence and overall: share right, median error (mm), share of slices all right,
    each with a 95% patient-bootstrap interval."""
    out: dict[str, dict[str, float]] = {}
    sequences = sorted({r.sequence for r in results})
    for name in ["all", *sequences]:
        rows = [r for r in results if name == "all" or r.sequence == name]
        if not rows:
            continue
        right = np.array([r.right for r in rows], dtype=float)
        error = np.array([r.error_mm if r.right else np.nan for r in rows])
        images = np.array([r.image for r in rows])
        patients = np.array([r.patient for r in rows])

        def share(ix: np.ndarray, right: np.ndarray = right) -> float:
            return float(right[ix].mean())

        def median(ix: np.ndarray, error: np.ndarray = error) -> float:
            values = error[ix]
            return float(np.nanmedian(values)) if np.isfinite(values).any() else np.nan

        slice_ok: dict[str, bool] = {}
        slice_patient: dict[str, str] = {}
        for r in rows:
            slice_ok[r.image] = slice_ok.get(r.image, True) and r.right
            slice_patient[r.image] = r.patient
        ok = np.array(list(slice_ok.values()), dtype=float)

        def all_right(ix: np.ndarray, ok: np.ndarray = ok) -> float:
            return float(ok[ix].mean())

        figures: dict[str, float] = {}
        for key, fn, groups, n in (
            ("found_named", share, patients, len(rows)),
            ("median_error_mm", median, patients, len(rows)),
            ("slices_all_right", all_right, np.array(list(slice_patient.values())), len(ok)),
        ):
            low, high = bootstrap_statistic(groups, fn, resamples=resamples)
            figures[key] = fn(np.arange(n))
            figures[key + "_low"] = low
            figures[key + "_high"] = high
        figures["discs"] = float(len(rows))
        figures["slices"] = float(len(set(images.tolist())))
        figures["patients"] = float(len(set(patients.tolist())))
        out[name] = figures
    return out
