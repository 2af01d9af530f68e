"""The multi-task head, its penalty choice, temperature scaling and the figures."""

from __future__ import annotations

import numpy as np
import pytest

from lumbar.grader.calibration import expected_calibration_error, fit_temperature
from lumbar.grader.evaluate import bootstrap, pfirrmann_figures, quadratic_kappa
from lumbar.grader.head import choose_l2, fit_head
from lumbar.grader.recipe import fuse_views, slice_centred


def _data(n: int = 300, d: int = 40, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 50, size=d)  # wildly different scales
    signal = x[:, 0] / x[:, 0].std() + 0.2 * rng.normal(size=n)
    grade = np.clip(np.digitize(signal, [-1.2, -0.4, 0.4, 1.2]) + 1, 1, 5)
    return x, {"disc_abnormal": (signal > 0.3).astype(np.int64), "pfirrmann": grade}


def test_head_learns_every_target_and_keeps_probabilities_proper() -> None:
    x, y = _data()
    head = fit_head(x[:200], {k: v[:200] for k, v in y.items()}, 1e-2, components=None)
    probs = head.probabilities(x[200:])
    p = probs["disc_abnormal"]
    assert p.shape == (100,) and ((p >= 0) & (p <= 1)).all()
    assert ((p > 0.5) == y["disc_abnormal"][200:]).mean() > 0.85
    assert probs["pfirrmann"].shape == (100, 5)
    np.testing.assert_allclose(probs["pfirrmann"].sum(axis=1), 1.0, atol=1e-9)
    assert pfirrmann_figures(y["pfirrmann"][200:], probs["pfirrmann"])["within1"] > 0.9
    # the principal-axes fit (the default) gives nearly the same model here (40 < 256 axes)
    pca = fit_head(x[:200], {k: v[:200] for k, v in y.items()}, 1e-2)
    np.testing.assert_allclose(pca.probabilities(x[200:])["disc_abnormal"], p, atol=1e-3)


def test_penalty_chosen_on_validation_grows_with_noise() -> None:
    x, y = _data(n=120, d=200, seed=1)  # more features than rows: a penalty is needed
    rng = np.random.default_rng(2)
    noisy = {"disc_abnormal": rng.integers(0, 2, 120)}  # labels unrelated to the features
    grid = (1e-3, 1e-1, 10.0)
    clean = choose_l2(x[:80], {"disc_abnormal": y["disc_abnormal"][:80]}, x[80:],
                      {"disc_abnormal": y["disc_abnormal"][80:]}, grid=grid)  # fmt: skip
    random = choose_l2(x[:80], {"disc_abnormal": noisy["disc_abnormal"][:80]}, x[80:],
                       {"disc_abnormal": noisy["disc_abnormal"][80:]}, grid=grid)  # fmt: skip
    assert random["disc_abnormal"] == 10.0 and clean["disc_abnormal"] < 10.0


def test_temperature_undoes_overconfidence_and_lowers_ece() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(scale=2.0, size=4000)
    labels = (rng.uniform(size=4000) < 1 / (1 + np.exp(-true_logit))).astype(np.int64)
    overconfident = 3.0 * true_logit
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.15)
    before = expected_calibration_error(1 / (1 + np.exp(-overconfident)), labels)
    after = expected_calibration_error(1 / (1 + np.exp(-overconfident / t)), labels)
    assert after < before / 2
    multi = np.stack([np.zeros(4000), overconfident], axis=1)  # the same as two classes
    assert fit_temperature(multi, labels) == pytest.approx(t, rel=0.05)


def test_kappa_bootstrap_fusion_and_slice_centring() -> None:
    truth = np.array([0, 1, 2, 3, 4, 0, 1])
    assert quadratic_kappa(truth, truth, 5) == pytest.approx(1.0)
    assert quadratic_kappa(truth, 4 - truth, 5) < 0
    groups = np.repeat(np.arange(20), 5).astype(str)
    values = np.arange(100, dtype=float)
    ci = bootstrap(lambda i: {"mean": float(values[i].mean())}, groups, resamples=200)
    value, low, high = ci["mean"]
    assert value == pytest.approx(49.5) and low < value < high

    class Rows:
        patient = np.array(["a", "a", "b", "a"])
        level = np.array(["L4-L5", "L4-L5", "L4-L5", "L5-S1"])

    fused = fuse_views({"t": np.array([0.2, 0.6, 0.9, 0.1])}, Rows())  # type: ignore[arg-type]
    np.testing.assert_allclose(fused["t"], [0.4, 0.4, 0.9, 0.1])
    x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 5.0]])
    np.testing.assert_allclose(slice_centred(x, np.array([0, 0, 1])), [[-1, -2], [1, 2], [0, 0]])
