"""`lumbar evaluate` and `lumbar compare` on tiny trained runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny_run import tiny, write_learnable_manifest
from sklearn import metrics as skm

from lumbar.errors import UserError
from lumbar.train.evaluate import compare_runs, evaluate_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from lumbar.train import train

    folder = tmp_path_factory.mktemp("eval")
    manifest = write_learnable_manifest(folder / "data")
    train(tiny(manifest, epochs=1), folder / "a", progress=False)
    train(tiny(manifest, epochs=3, lr=3e-3), folder / "b", progress=False)
    return folder / "a", folder / "b"


def test_evaluate_json_matches_predictions(runs: tuple[Path, Path]) -> None:
    run = runs[1]
    result = subprocess.run(
        [sys.executable, "-m", "lumbar.cli", "evaluate", str(run), "--json", "--resamples", "200"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "ci"} <= set(data)
    rows = (run / "predictions-test.csv").read_text().splitlines()[1:]
    labels = np.array([int(r.split(",")[2]) for r in rows])
    predicted = np.array([int(r.split(",")[3]) for r in rows])
    assert data["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert data["f1"] == pytest.approx(skm.f1_score(labels, predicted, zero_division=0))
    assert (run / "confusion-test.png").stat().st_size > 1000
    assert data["n"] == len(rows) and data["patients"] == 3


def test_evaluate_other_manifest_and_errors(runs: tuple[Path, Path], tmp_path: Path) -> None:
    other = write_learnable_manifest(tmp_path / "other", patients=16)
    result = evaluate_run(runs[0], split="val", manifest=other, resamples=50)
    assert result["split"] == "val" and result["n"] > 0
    with pytest.raises(UserError, match="not a training run"):
        evaluate_run(tmp_path)


def test_compare_improvement_and_p_value(runs: tuple[Path, Path]) -> None:
    result = compare_runs(runs[0], runs[1], resamples=200)
    a, b = result["a"]["accuracy"], result["b"]["accuracy"]
    if a:
        assert result["improvement"]["accuracy"] == pytest.approx((b - a) / abs(a) * 100)
    assert 0.0 <= result["paired"]["f1"]["p_value"] <= 1.0
    cli = subprocess.run(
        [sys.executable, "-m", "lumbar.cli", "compare", str(runs[0]), str(runs[1])],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0 and "improvement" in cli.stdout
