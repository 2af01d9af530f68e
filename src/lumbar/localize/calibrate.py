"""Fit the decoding on out-of-fold network outputs: thresholds, then isotonic confidences.

The detection and L5-S1 thresholds maximise the share of true discs found and named; the
confidences map each found disc's raw score to the share of such discs that were right
(isotonic regression): a named disc is right when a true disc of its level lies within half
the local disc spacing, an unnamed one when any true disc does.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lumbar.localize.data import Sample
from lumbar.localize.decode import Decoding, Peak, image_context, name_discs
from lumbar.localize.evaluate import local_half_spacing, score_slice

DETECT_GRID = (0.15, 0.2, 0.3, 0.4, 0.5)
ANCHOR_GRID = (0.1, 0.2, 0.3, 0.5)
RATIO_GRID = (0.5, 0.6, 0.8, 1.0)


def _found_right(sample: Sample, x: float, y: float, level: str | None) -> bool:
    tol = local_half_spacing(sample.points)
    for (tx, ty), tl, t in zip(sample.points, sample.levels, tol, strict=True):
        if np.hypot(x - tx, y - ty) <= t and (level is None or level == tl):
            return True
    return False


def _share_right(samples: list[Sample], peaks: list[list[Peak]], decoding: Decoding) -> float:
    results = [
        r
        for s, p in zip(samples, peaks, strict=True)
        for r in score_slice(
            s, name_discs(p, decoding, *image_context(s.image.shape, s.spacing_mm))
        )
    ]
    return float(np.mean([r.right for r in results])) if results else 0.0


def _isotonic(raw: list[float], right: list[bool]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Knots of a non-decreasing map raw -> share right (identity when too few points)."""
    if len(raw) < 10 or len(set(right)) < 2:
        return (0.0, 1.0), (0.0, 1.0)
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, right)
    # below the lowest score seen, confidence falls linearly to 0 at score 0 (images unlike the
    # training set, e.g. an axial slice, give tiny scores that a flat extrapolation would lift)
    xs = np.concatenate([[0.0], model.X_thresholds_, [1.0]])
    ys = np.concatenate([[0.0], model.y_thresholds_, [model.y_thresholds_[-1]]])
    return tuple(float(v) for v in xs), tuple(float(v) for v in ys)


def fit_decoding(samples: list[Sample], peaks: list[list[Peak]]) -> Decoding:
    """Thresholds (grid search) and isotonic confidences from labelled slices' peaks."""
    best, best_share = Decoding(), -1.0
    for detect in DETECT_GRID:
        for anchor in ANCHOR_GRID:
            for ratio in RATIO_GRID:
                candidate = Decoding(detect=detect, anchor=anchor, anchor_ratio=ratio)
                share = _share_right(samples, peaks, candidate)
                if share > best_share + 1e-9:
                    best, best_share = candidate, share
    named_raw, named_right, unnamed_raw, unnamed_right = [], [], [], []
    for s, p in zip(samples, peaks, strict=True):
        discs = name_discs(p, best, *image_context(s.image.shape, s.spacing_mm))  # raw scores
        for d in discs:
            target = _found_right(s, d.x, d.y, d.level)
            if d.level is None:
                unnamed_raw.append(d.confidence)
                unnamed_right.append(target)
            else:
                named_raw.append(d.confidence)
                named_right.append(target)
    nx, ny = _isotonic(named_raw, named_right)
    ux, uy = _isotonic(unnamed_raw, unnamed_right)
    return replace(best, named_x=nx, named_y=ny, unnamed_x=ux, unnamed_y=uy)
