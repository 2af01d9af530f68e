"""Shared fixtures: a small phantom cohort (made once per test process), the real data, and
an empty torch hub cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.shared_data import REAL_MRI


@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three phantom patients written by `lumbar synth` (seed 11); treat as read-only."""
    from lumbar.synth import synthesize_cohort

    out = tmp_path_factory.mktemp("phantom") / "studies"
    synthesize_cohort(out, patients=3, seed=11, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def protocol_cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Path]:
    """One phantom patient per scanner protocol (`helpers.protocol_cohorts`); read-only."""
    from helpers.protocol_cohorts import write_protocol_cohorts

    return write_protocol_cohorts(tmp_path_factory.mktemp("protocols"))


@pytest.fixture(scope="session")
def real_mri_dir() -> Path:
    """Real unlabelled lumbar MRI PNGs from ../shared/data (skipped where that folder is absent)."""
    if not REAL_MRI.is_dir():
        pytest.skip(f"real MRI folder {REAL_MRI} is absent (as in a user's clone)")
    return REAL_MRI


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache; returns its checkpoints folder (not created)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"
