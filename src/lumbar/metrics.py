"""The paper's metrics (Eq. 4-8), ROC AUC, confusion matrices and patient-level bootstrap CIs.

Plain NumPy, so the numbers can be checked against scikit-learn (the tests do) without making it
a run-time dependency. Binary targets report precision, recall and F1 of the positive class
(index 1, "abnormal"), as the paper's Eq. 5-7; targets with more classes report the macro
average and each class. Confidence intervals resample patients, not images: the images of one
patient are correlated, and resampling them independently would make the intervals too narrow.

Example:
    >>> m = classification_metrics(labels, probabilities)
    >>> m["f1"], m["roc_auc"]
    >>> ci = bootstrap_ci(labels, probabilities, patients)   # {"f1": (low, high), ...}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "METRICS",
    "bootstrap_ci",
    "classification_metrics",
    "confusion_matrix",
    "improvement_rate",
    "paired_bootstrap",
    "roc_auc",
]

#: The headline metrics, in the paper's table order.
METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc")


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts; rows are true classes, columns predicted classes."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    flat = labels * num_classes + predicted
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, -1)


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Mann-Whitney AUC with ties counted half; None when one class is absent."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average ranks of tied scores
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    rank_sum = ranks[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """ROC AUC: of the positive class for 2 classes, else the macro one-vs-rest average.

    Classes absent from `labels` are left out of the average; None when it is undefined
    (a single class present).
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = probabilities.shape[1]
    if num_classes == 2:
        return _binary_auc(labels == 1, probabilities[:, 1])
    values = [_binary_auc(labels == c, probabilities[:, c]) for c in range(num_classes)]
    defined = [v for v in values if v is not None]
    if len(defined) < 2:
        return None
    return float(np.mean(defined))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _from_confusion(matrix: np.ndarray) -> dict[str, Any]:
    """Accuracy and per-class precision/recall/F1 (Eq. 4-7) from a confusion matrix."""
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, actual)
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = matrix.sum()
    accuracy = float(tp.sum() / total) if total else 0.0
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


def classification_metrics(
    labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (Eq. 4-7), ROC AUC and the confusion matrix.

    Args:
        labels: true class per image, (N,).
        probabilities: class probabilities per image, (N, C); the prediction is the argmax.
        class_names: names for the per-class table (default "0".."C-1").

    Returns:
        A dict with `accuracy`, `precision`, `recall`, `f1`, `roc_auc` (None if undefined),
        `average` ("positive class" for C == 2, else "macro"), `per_class`
        ({name: {precision, recall, f1, support}}), `confusion_matrix` (list of lists) and `n`.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = probabilities.shape[1]
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), num_classes)
    parts = _from_confusion(matrix)
    if num_classes == 2:
        pick = {k: float(parts[k][1]) for k in ("precision", "recall", "f1")}
        average = "positive class"
    else:
        present = matrix.sum(axis=1) > 0  # macro over the classes that occur (or are predicted)
        present |= matrix.sum(axis=0) > 0
        pick = {k: float(parts[k][present].mean()) for k in ("precision", "recall", "f1")}
        average = "macro"
    return {
        "accuracy": parts["accuracy"],
        **pick,
        "roc_auc": roc_auc(labels, probabilities),
        "average": average,
        "per_class": {
            name: {
                "precision": float(parts["precision"][c]),
                "recall": float(parts["recall"][c]),
                "f1": float(parts["f1"][c]),
                "support": int(matrix[c].sum()),
            }
            for c, name in enumerate(names)
        },
        "confusion_matrix": matrix.tolist(),
        "n": len(labels),
    }


def _headline(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    m = classification_metrics(labels, probabilities)
    return {k: m[k] for k in METRICS}


def _patient_index(groups: Sequence[str] | np.ndarray) -> list[np.ndarray]:
    """Row indices of each group (patient), in first-seen order."""
    groups = np.asarray(groups)
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    splits = np.cumsum(np.bincount(inverse))[:-1]
    return np.split(order, splits)


def _resample_rows(
    members: list[np.ndarray], rng: np.random.Generator, count: int
) -> list[np.ndarray]:
    draws = rng.integers(0, len(members), size=(count, len(members)))
    return [np.concatenate([members[j] for j in row]) for row in draws]


def bootstrap_ci(
    labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    groups: Sequence[str] | np.ndarray,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap confidence intervals of the headline metrics, resampling patients.

    Each resample draws as many patients as there are, with replacement, and takes all their
    images. Returns {metric: (low, high)}, None for a metric undefined in too many resamples
    (ROC AUC with a single class).
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    members = _patient_index(groups)
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {k: [] for k in METRICS}
    for rows in _resample_rows(members, rng, resamples):
        for key, value in _headline(labels[rows], probabilities[rows]).items():
            if value is not None:
                values[key].append(value)
    alpha = (1.0 - level) / 2.0
    out: dict[str, tuple[float, float] | None] = {}
    for key, vals in values.items():
        if len(vals) < resamples // 2:
            out[key] = None
        else:
            low, high = np.quantile(vals, [alpha, 1.0 - alpha])
            out[key] = (float(low), float(high))
    return out


def bootstrap_statistic(
    groups: Sequence[str] | np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of `statistic(rows)` over patient resamples (rows index `groups`).

    For any figure pooled over rows (discs, slices) that belong to patients: each resample
    draws as many patients as there are, with replacement, and passes all their rows.
    """
    members = _patient_index(groups)
    rng = np.random.default_rng(seed)
    values = [statistic(rows) for rows in _resample_rows(members, rng, resamples)]
    finite = [v for v in values if np.isfinite(v)]  # a resample may leave it undefined
    if not finite:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def improvement_rate(old: float, new: float) -> float | None:
    """Eq. 8: (new - old) / |old| x 100, in percent; None when `old` is 0."""
    if old == 0:
        return None
    return (new - old) / abs(old) * 100.0


def paired_bootstrap(
    labels: np.ndarray,
    probabilities_a: np.ndarray,
    probabilities_b: np.ndarray,
    groups: Sequence[str] | np.ndarray,
    *,
    resamples: int = 2000,
    seed: int = 0,
    metric_fn: Callable[[np.ndarray, np.ndarray], dict[str, float | None]] = _headline,
) -> dict[str, dict[str, float | None]]:
    """Paired patient-level bootstrap of B - A on the same images.

    Both models are scored on the same resampled patients. The two-sided p-value is
    2 x min(P(diff <= 0), P(diff >= 0)) over the resamples (capped at 1): small when B beats
    A (or A beats B) in nearly every resample.

    Returns:
        {metric: {"diff": B - A on all images, "low", "high" (95% CI of the difference),
        "p_value"}}.
    """
    labels = np.asarray(labels, dtype=np.int64)
    a_all = metric_fn(labels, probabilities_a)
    b_all = metric_fn(labels, probabilities_b)
    members = _patient_index(groups)
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[float]] = {k: [] for k in a_all}
    for rows in _resample_rows(members, rng, resamples):
        a = metric_fn(labels[rows], probabilities_a[rows])
        b = metric_fn(labels[rows], probabilities_b[rows])
        for key in diffs:
            if a[key] is not None and b[key] is not None:
                diffs[key].append(float(b[key]) - float(a[key]))
    out: dict[str, dict[str, float | None]] = {}
    for key, vals in diffs.items():
        a_value, b_value = a_all[key], b_all[key]
        diff = None if a_value is None or b_value is None else float(b_value) - float(a_value)
        if len(vals) < resamples // 2:
            out[key] = {"diff": diff, "low": None, "high": None, "p_value": None}
            continue
        arr = np.asarray(vals)
        p = min(1.0, 2.0 * min(float(np.mean(arr <= 0)), float(np.mean(arr >= 0))))
        low, high = np.quantile(arr, [0.025, 0.975])
        out[key] = {"diff": diff, "low": float(low), "high": float(high), "p_value": p}
    return out
