"""Calibration: thresholds from labelled peaks, isotonic confidences that vanish at score 0."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from lumbar.localize.calibrate import _isotonic, fit_decoding
from lumbar.localize.data import Sample
from lumbar.localize.decode import Peak, name_discs


def test_isotonic_map_is_monotone_and_falls_to_zero_below_the_data() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.2, 1.0, 200)
    right = rng.uniform(0, 1, 200) < 0.5 + raw / 2  # right often, more so at higher scores
    xs, ys = _isotonic(list(raw), list(right))
    assert xs[0] == 0.0 and ys[0] == 0.0
    assert all(b >= a for a, b in pairwise(ys))
    assert np.interp(0.1, xs, ys) < np.interp(0.2, xs, ys) <= np.interp(0.9, xs, ys)


def test_fit_decoding_recovers_the_names_of_a_clean_slice() -> None:
    points = np.array([[50.0, 20.0 + 20 * k] for k in range(5)])
    levels = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
    sample = Sample("s", np.zeros((160, 100), np.float32), points, levels, (1.0, 1.0), "spider")
    peaks = [Peak(x, y, 0.9, 0.8 if k == 4 else 0.05) for k, (x, y) in enumerate(points)]
    peaks.append(Peak(52.0, 150.0, 0.35, 0.6))  # a sacral remnant: weaker L5-S1 score
    decoding = fit_decoding([sample] * 12, [peaks] * 12)
    discs = name_discs(peaks, decoding, height=160.0)
    assert [d.level for d in discs if d.level] == list(levels)
