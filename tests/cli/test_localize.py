"""`lumbar localize INPUT... --out DIR`: a batch with good and bad inputs, one model load."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from typer.testing import CliRunner

from lumbar.cli import app
from lumbar.localize.data import phantom_disc_pixels
from lumbar.localize.preprocess import window
from lumbar.localize.study import sagittal_t2_files
from lumbar.synth import synthesize_cohort
from lumbar.synth.cohort import make_patient
from lumbar.synth.series import StudyBuilder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    pixels, _, _ = phantom_disc_pixels(StudyBuilder(make_patient(8, 0)))
    Image.fromarray((window(pixels) * 255).astype(np.uint8)).save(root / "phantom.png")
    Image.fromarray(np.zeros((200, 200), dtype=np.uint8)).save(root / "blank.png")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    synthesize_cohort(root / "cohort", patients=1, seed=3, progress=False)
    study = next(p for p in (root / "cohort").iterdir() if p.is_dir())
    ds = pydicom.dcmread(sagittal_t2_files(study)[0])
    del ds.ImagePositionPatient
    ds.save_as(root / "no-geometry.dcm")
    return {
        "no geometry": root / "no-geometry.dcm",
        "image": root / "phantom.png",
        "blank": root / "blank.png",
        "broken": root / "broken.png",
        "study": study,
        "missing": root / "nothing-here.png",
    }


def test_a_batch_goes_on_past_bad_inputs(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    names = ("image", "broken", "blank", "missing", "study", "no geometry")
    given = [str(inputs[k]) for k in names]
    result = CliRunner().invoke(app, ["localize", *given, "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert any(line.startswith(given[1]) and "cannot read" in line for line in lines)
    assert any(line.startswith(given[3]) and "no such file" in line for line in lines)
    assert any(line.startswith(given[5]) and "ImagePositionPatient" in line for line in lines), (
        lines
    )
    assert f"{given[2]}: no discs found" in lines
    assert "Traceback" not in result.output
    with open(out / "discs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_input = {g: [r for r in rows if r["input"] == g] for g in given}
    assert {r["level"] for r in by_input[given[0]]} >= {"L3-L4", "L4-L5", "L5-S1"}
    assert all(r["x_mm"] == "" for r in by_input[given[0]])  # a PNG has no patient coordinates
    assert by_input[given[4]] and all(r["z_mm"] != "" for r in by_input[given[4]])
    assert not by_input[given[1]] and not by_input[given[2]]
    with open(out / "inputs.csv", newline="") as handle:
        status = {r["input"]: r["status"] for r in csv.DictReader(handle)}
    assert status[given[0]] == "ok" and status[given[2]] == "no discs found"
    assert status[given[1]].startswith("failed")
    assert len(list((out / "overlays").glob("*.png"))) == 3  # image, blank, study
    assert (out / "contact-sheet.png").is_file()


def test_the_default_command_is_find(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["localize", "find", str(inputs["image"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 of 1 inputs localised" in result.output
