"""Fixtures of the structured-output tests: a tiny run's prediction on a phantom study, made
once per session (the helpers that use it are in `helpers.structured`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.structured import SECRET
from helpers.tiny_run import make_tiny_run

from lumbar.inference.predict import Predictor
from lumbar.pseudonym import SECRET_ENV

STUDY = "patient-0001"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("run") / "mnv2", "mobilenet_v2", roi="grid")


@pytest.fixture(scope="session")
def predicted(phantom_cohort: Path, tiny_run: Path) -> tuple[dict[str, Any], Path, Predictor]:
    """(predict_study result with sources, study folder, predictor) of one phantom study,
    pseudonymised with the fixed test secret (set only while it runs)."""
    predictor = Predictor.load(tiny_run)
    study = phantom_cohort / STUDY
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SECRET_ENV, SECRET)
        result = predictor.predict_study(study, None, sources=True)
    return result, study, predictor
