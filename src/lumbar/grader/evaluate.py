"""The grader's figures: F1, ROC AUC and calibration error of the binary targets, Pfirrmann
exact and within-one agreement and weighted kappa, each with a patient-bootstrap 95% interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lumbar.grader.calibration import expected_calibration_error
from lumbar.metrics import roc_auc

__all__ = ["binary_figures", "bootstrap", "pfirrmann_figures", "quadratic_kappa"]


def _f1(labels: np.ndarray, p: np.ndarray) -> float:
    predicted = p >= 0.5
    tp = float((predicted & (labels == 1)).sum())
    fp = float((predicted & (labels == 0)).sum())
    fn = float((~predicted & (labels == 1)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def binary_figures(labels: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """F1 of the positive class at 0.5, ROC AUC and ECE of P(positive) `p`."""
    auc = roc_auc(labels, np.stack([1 - p, p], axis=1))
    return {
        "f1": _f1(labels, p),
        "auc": float("nan") if auc is None else float(auc),
        "ece": expected_calibration_error(p, labels),
    }


def quadratic_kappa(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """Cohen's kappa with quadratic weights of two gradings 0..classes-1."""
    observed = np.zeros((classes, classes))
    np.add.at(observed, (truth, predicted), 1)
    observed /= max(observed.sum(), 1)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices((classes, classes))
    weights = (i - j) ** 2 / (classes - 1) ** 2
    denominator = float((weights * expected).sum())
    return (
        float("nan") if denominator == 0 else 1.0 - float((weights * observed).sum()) / denominator
    )


def pfirrmann_figures(grades: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Exact and within-one agreement and quadratic kappa of the most probable grade (p is
    (N, 5) over grades 1-5, `grades` 1-5), and the top-label ECE."""
    truth = np.asarray(grades) - 1
    predicted = p.argmax(axis=1)
    return {
        "exact": float((predicted == truth).mean()),
        "within1": float((np.abs(predicted - truth) <= 1).mean()),
        "kappa": quadratic_kappa(truth, predicted, p.shape[1]),
        "ece": expected_calibration_error(p, truth),
    }


def bootstrap(
    figures: Callable[[np.ndarray], Mapping[str, float]],
    groups: Sequence[str] | np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """{figure: (value, low, high)}: `figures(rows)` on all rows, and the 2.5th and 97.5th
    percentiles over `resamples` draws of patients with replacement (all rows of each)."""
    groups = np.asarray(groups)
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    full = figures(np.arange(len(groups)))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in full}
    for _ in range(resamples):
        pick = rng.integers(0, len(members), len(members))
        rows = np.concatenate([members[j] for j in pick])
        for k, v in figures(rows).items():
            if np.isfinite(v):
                draws[k].append(v)
    out = {}
    for k, v in full.items():
        low, high = np.quantile(draws[k], [0.025, 0.975]) if draws[k] else (np.nan, np.nan)
        out[k] = (float(v), float(low), float(high))
    return out
