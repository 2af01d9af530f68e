"""Fixtures: a small but real experiment folder (see experiment_folder.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.experiment_folder import (
    FAILED,
    NOT_RUN,
    TRAINED,
    train_run,
    write_manifest,
    write_plan,
)


@pytest.fixture(scope="session")
def trained_exp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment folder with 4 trained runs, one planned run never started and one failed
    run; treat as read-only (copy it to write a report)."""
    exp = tmp_path_factory.mktemp("exp") / "tiny-exp"
    exp.mkdir()
    manifest = write_manifest(exp / "datasets" / "main")
    for run in TRAINED:
        train_run(exp, manifest, run)
    failed = exp / "runs" / FAILED["id"]
    failed.mkdir(parents=True)
    (failed / "run.log").write_text("Traceback (most recent call last):\nRuntimeError: boom\n")
    write_plan(exp, manifest, [*TRAINED, NOT_RUN, FAILED])
    return exp


@pytest.fixture
def exp_copy(trained_exp: Path, tmp_path: Path) -> Path:
    """A writable copy of the trained experiment."""
    target = tmp_path / trained_exp.name
    shutil.copytree(trained_exp, target)
    plan = json.loads((target / "plan.json").read_text())
    manifest = target / "datasets" / "main" / "manifest.csv"
    plan["datasets"]["main"]["manifest"] = str(manifest)
    (target / "plan.json").write_text(json.dumps(plan))
    return target
