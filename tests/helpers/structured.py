"""Helpers of the structured-output tests (tests/structured): a prediction made into a
StudyPrediction in either identity mode, a many-finding variant, the source headers, and
dciodvfy's errors."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest

from lumbar.inference.predict import Predictor
from lumbar.structured.export import algorithm_info, build_prediction
from lumbar.structured.identity import Identity
from lumbar.structured.model import FindingResult, StudyPrediction

SECRET = "structured-test-secret"  # the pseudonym secret of the `predicted` fixture


def predicted_study(
    predicted: tuple[dict[str, Any], Path, Predictor], mode: Identity
) -> tuple[StudyPrediction, list[Any], dict[str, Any]]:
    result, study, predictor = predicted
    info = algorithm_info(predictor.run_dir, predictor.config)
    return build_prediction(result, study, info, predictor.classes, mode)


def rich(prediction: StudyPrediction) -> StudyPrediction:
    """The prediction with several findings per disc (4-grade, stenosis, herniation type,
    Pfirrmann), as a sagittal grader would give: exercises every code path of the writers."""
    values = [
        ("disc_state", ["normal", "degeneration", "bulge", "herniation", "bulge"]),
        ("herniation", ["none", "normal", "migration", "sequestration", "none"]),
        ("scs", ["normal", "mild", "moderate", "severe", "mild"]),
        ("lfs_binary", ["normal", "stenosis", "normal", "stenosis", "normal"]),
        ("pfirrmann", ["pfirrmann 1", "pfirrmann 2", "pfirrmann 3", "pfirrmann 4", "pfirrmann 5"]),
    ]
    discs = []
    for k, disc in enumerate(prediction.discs):
        findings = tuple(
            FindingResult(name, names[k % 5], round(0.31 + 0.1371 * k + 0.01 * j, 5))
            for j, (name, names) in enumerate(values)
        )
        discs.append(dataclasses.replace(disc, findings=findings))
    return dataclasses.replace(prediction, discs=tuple(discs))


def source_headers(study: Path) -> list[Any]:
    """Every DICOM header of the study folder."""
    return [
        pydicom.dcmread(path, stop_before_pixels=True)
        for path in sorted(study.rglob("*"))
        if path.is_file() and path.suffix not in (".csv", ".json")
    ]


def dciodvfy_errors(path: Path) -> tuple[list[str], str]:
    """(the "Error" lines of dciodvfy on a DICOM file, its whole output); skips the test,
    visibly, where dciodvfy (Debian dicom3tools) is not installed."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy is not installed (Debian package dicom3tools; `make test` as root)")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    return [line for line in output.splitlines() if line.startswith("Error")], output
