"""The paper's metrics against scikit-learn, and the bootstrap helpers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from lumbar.metrics import (
    bootstrap_ci,
    classification_metrics,
    improvement_rate,
    paired_bootstrap,
    roc_auc,
)


def _random(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[labels] * rng.random((n, 1))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_matches_sklearn(seed: int) -> None:
    labels, probs = _random(120, 2, seed)
    m = classification_metrics(labels, probs)
    predicted = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert m["precision"] == pytest.approx(skm.precision_score(labels, predicted))
    assert m["recall"] == pytest.approx(skm.recall_score(labels, predicted))
    assert m["f1"] == pytest.approx(skm.f1_score(labels, predicted))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probs[:, 1]))
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, predicted).tolist()
    assert m["average"] == "positive class"


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_macro_matches_sklearn(seed: int) -> None:
    labels, probs = _random(200, 4, seed)
    m = classification_metrics(labels, probs, ["normal", "degeneration", "bulge", "herniation"])
    predicted = probs.argmax(1)
    for key, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                    ("f1", skm.f1_score)):  # fmt: skip
        assert m[key] == pytest.approx(fn(labels, predicted, average="macro", zero_division=0))
        per = fn(labels, predicted, average=None, zero_division=0)
        assert [m["per_class"][c][key] for c in m["per_class"]] == pytest.approx(per)
    assert m["roc_auc"] == pytest.approx(
        skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    )


def test_ties_and_degenerate_cases() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.5, 0.2, 0.5, 0.9, 0.5])
    probs = np.stack([1 - scores, scores], 1)
    assert roc_auc(labels, probs) == pytest.approx(skm.roc_auc_score(labels, scores))
    assert roc_auc(np.zeros(3, int), np.full((3, 2), 0.5)) is None  # one class: undefined
    m = classification_metrics(np.zeros(4, int), np.tile([0.9, 0.1], (4, 1)))
    assert m["precision"] == 0.0 and m["f1"] == 0.0 and m["accuracy"] == 1.0


def test_bootstrap_ci_resamples_patients() -> None:
    labels, probs = _random(300, 2, 3)
    patients = np.repeat(np.arange(60), 5).astype(str)
    ci = bootstrap_ci(labels, probs, patients, resamples=300, seed=1)
    point = classification_metrics(labels, probs)
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        low, high = ci[key]
        assert low <= point[key] <= high and high - low < 0.3
    assert bootstrap_ci(labels, probs, patients, resamples=300, seed=1) == ci  # seeded


def test_improvement_rate_and_paired_bootstrap() -> None:
    assert improvement_rate(78.57, 91.07) == pytest.approx(15.909, abs=1e-3)  # Table 10 ResNet50
    assert improvement_rate(0.0, 1.0) is None
    labels, weak = _random(200, 2, 4)
    strong = np.stack([1.0 - labels, labels.astype(float)], 1) * 0.9 + 0.05
    patients = np.repeat(np.arange(40), 5).astype(str)
    result = paired_bootstrap(labels, weak, strong, patients, resamples=300)
    assert result["accuracy"]["p_value"] < 0.01 and result["accuracy"]["diff"] > 0
    same = paired_bootstrap(labels, weak, weak, patients, resamples=300)
    assert same["f1"]["p_value"] == 1.0 and same["f1"]["diff"] == 0.0


def test_bootstrap_statistic_resamples_patients() -> None:
    from lumbar.metrics import bootstrap_statistic

    values = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    low, high = bootstrap_statistic(groups, lambda ix: float(values[ix].mean()), resamples=500)
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    same = bootstrap_statistic(groups, lambda ix: 0.25, resamples=50)
    assert same == (0.25, 0.25)
    nan = bootstrap_statistic(groups, lambda ix: float("nan"), resamples=20)
    assert all(v != v for v in nan)
