"""Mean and 95% interval over seeds/folds on known inputs."""

from __future__ import annotations

import math

import pytest

from lumbar.report.aggregate import estimate, t_interval

# Student t quantiles t(0.975, df) from a printed table (not from scipy, which the code uses)
T975 = {1: 12.7062, 2: 4.3027, 4: 2.7764}


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0], [80.0, 90.0], [0.5, 0.7, 0.6, 0.9, 0.8]])
def test_t_interval_by_hand(values: list[float]) -> None:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T975[n - 1] * sd / math.sqrt(n)
    e = t_interval(values)
    assert e.n == n and e.method == "t"
    assert e.mean == pytest.approx(mean)
    assert e.low == pytest.approx(mean - half, abs=1e-4 * max(1.0, half))
    assert e.high == pytest.approx(mean + half, abs=1e-4 * max(1.0, half))


def test_known_interval() -> None:
    e = t_interval([1.0, 2.0, 3.0])  # sd 1, half width 4.3027 / sqrt(3) = 2.4841
    assert (round(e.low, 3), round(e.high, 3)) == (-0.484, 4.484)


def test_single_run_and_no_run() -> None:
    single = estimate([0.8], [0.7, 0.9])
    assert (single.mean, single.low, single.high, single.n) == (0.8, 0.7, 0.9, 1)
    assert single.method == "bootstrap"
    bare = estimate([0.8])
    assert (bare.mean, bare.low, bare.high, bare.method) == (0.8, None, None, "none")
    nothing = estimate([])
    assert nothing.mean is None and nothing.n == 0
    # with two runs the runs' own intervals are ignored: the spread over seeds is what counts
    assert estimate([0.8, 0.9], [0.0, 1.0]).method == "t"
    assert estimate([0.8, 0.9]).scaled(100).mean == pytest.approx(85.0)
