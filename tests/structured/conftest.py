"""Fixtures of the structured-output tests: a tiny run's prediction on a phantom study, made
once per session (the helpers that use it are in `helpers.structured`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.tiny_run import make_tiny_run

from lumbar.inference.predict import Predictor

SECRET = "structured-test-secret"
STUDY = "patient-0001"


@pytest.fixture(scope="session")
def secret_env() -> Iterator[None]:
    """A fixed pseudonym secret for the session (so pseudonyms are reproducible)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LUMBAR_PSEUDONYM_SECRET", SECRET)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("run") / "mnv2", "mobilenet_v2", roi="grid")


@pytest.fixture(scope="session")
def predicted(
    phantom_cohort: Path, tiny_run: Path, secret_env: None
) -> tuple[dict[str, Any], Path, Predictor]:
    """(predict_study result with sources, study folder, predictor) of one phantom study."""
    predictor = Predictor.load(tiny_run)
    study = phantom_cohort / STUDY
    return predictor.predict_study(study, None, sources=True), study, predictor
