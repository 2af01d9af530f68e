"""Mean and 95% interval of a metric over the seeds or folds of one table cell.

With two or more runs the interval is Student's t-interval of the mean,
mean +/- t(0.975, n-1) x sd / sqrt(n); with a single run it is that run's own patient-bootstrap
interval on its test set (`lumbar.train.evaluate`), and the `method` field says which, so the report
can label it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Estimate", "estimate", "t_interval"]


@dataclass(frozen=True)
class Estimate:
    """A mean with its interval.

    Attributes:
        mean: None when there is no value.
        low, high: the 95% interval (None when unknown).
        n: how many runs (seeds or folds) the mean is over.
        method: "t" (t-interval over runs), "bootstrap" (one run's patient bootstrap), or
            "none" (one run without an interval, or no run).
    """

    mean: float | None
    low: float | None
    high: float | None
    n: int
    method: str

    def scaled(self, factor: float) -> Estimate:
        """The same estimate with every value multiplied (e.g. by 100 for percent)."""

        def s(v: float | None) -> float | None:
            return None if v is None else v * factor

        return Estimate(s(self.mean), s(self.low), s(self.high), self.n, self.method)


def t_interval(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean and Student-t interval of `values` (n >= 2; with n == 1 no interval, n == 0 none)."""
    from scipy import stats

    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return Estimate(None, None, None, 0, "none")
    mean = math.fsum(vals) / n
    if n == 1:
        return Estimate(mean, None, None, 1, "none")
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n, "t")


def estimate(values: Sequence[float], single_ci: Sequence[float] | None = None) -> Estimate:
    """`t_interval` over runs, or for a single run its own interval `single_ci` (low, high)."""
    if len(values) == 1 and single_ci is not None and None not in single_ci:
        low, high = (float(v) for v in single_ci)
        return Estimate(float(values[0]), low, high, 1, "bootstrap")
    return t_interval(values)
