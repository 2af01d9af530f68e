"""Temperature scaling (Guo et al. 2017) and the expected calibration error.

One temperature per target divides its logits; it is fitted on out-of-fold predictions (each
disc predicted by a model that never saw its patient), by minimising the log loss over T, so
the probabilities keep their ranking (AUC unchanged) while becoming calibrated.
"""

from __future__ import annotations

import numpy as np

__all__ = ["expected_calibration_error", "fit_temperature"]

_TEMPERATURES = np.exp(np.linspace(np.log(0.2), np.log(10.0), 400))


def _log_loss(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = np.asarray(logits, np.float64) / temperature
    if z.ndim == 1 or z.shape[1] == 1:
        z = z.reshape(-1)
        # log(1 + exp(-z)) for positives, log(1 + exp(z)) for negatives, stably
        signed = np.where(labels == 1, z, -z)
        return float(np.logaddexp(0.0, -signed).mean())
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.2, 10] minimising the log loss of `logits` ((N,) or (N, 1) for a
    binary target, labels 0/1; (N, C) for C classes, labels 0..C-1), on a log-spaced grid."""
    labels = np.asarray(labels, np.int64)
    losses = [_log_loss(logits, labels, t) for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(losses))])


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
) -> float:
    """ECE over `bins` equal-width confidence bins.

    For a binary target, `probabilities` is (N,) P(positive) and the bins compare it with the
    positive rate; for C classes, (N, C), the bins compare the top probability with the
    accuracy of the top class (the top-label ECE).
    """
    p = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    if p.ndim == 1:
        confidence, outcome = p, (labels == 1).astype(np.float64)
    else:
        confidence = p.max(axis=1)
        outcome = (p.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(confidence[inside].mean() - outcome[inside].mean())
    return float(total / max(len(p), 1))
