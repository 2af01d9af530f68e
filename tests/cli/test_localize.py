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
    assert any(line.startswith("P") and "ImagePositionPatient" in line for line in lines), lines
    assert f"{given[2]}: no discs found" in lines
    assert "Traceback" not in result.output
    with open(out / "discs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_input = {g: [r for r in rows if r["input"] == g] for g in given}
    by_input[given[4]] = [r for r in rows if r["input"].startswith("P")]  # the study: a pseudonym
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


def test_dicom_names_never_reach_the_outputs(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study folder and a DICOM file named after a person: pseudonyms in every output."""
    import shutil

    from lumbar.localize import batch

    secret = "test-secret"
    monkeypatch.setenv("LUMBAR_PSEUDONYM_SECRET", secret)
    name = "DOE_JANE_19650101"
    folder = tmp_path / "in" / name
    shutil.copytree(inputs["study"], folder)
    dicom = tmp_path / "in" / f"{name}.dcm"
    shutil.copy(sagittal_t2_files(folder)[0], dicom)
    broken = tmp_path / "in" / f"{name}_2"
    broken.mkdir()
    shutil.copy(inputs["no geometry"], broken / "x.dcm")
    titles: list[str] = []
    draw = batch.draw_discs

    def spy(image, discs, title):  # type: ignore[no-untyped-def]
        titles.append(title)
        return draw(image, discs, title)

    monkeypatch.setattr(batch, "draw_discs", spy)
    out = tmp_path / "out"
    missing = tmp_path / "in" / f"{name}_3"
    given = [str(folder), str(dicom), str(broken), str(inputs["image"]), str(missing)]
    result = CliRunner().invoke(app, ["localize", *given, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert name not in result.output
    for path in out.rglob("*"):
        if path.is_file():
            assert name.encode() not in path.read_bytes(), path
    assert len(titles) == 3 and not any(name in t for t in titles)
    from lumbar.ingest.read import read_header
    from lumbar.pseudonym import pseudonymize

    pseudonym = pseudonymize(read_header(dicom).patient_id, secret.encode())
    assert titles[0].startswith(pseudonym) and titles[1].startswith(pseudonym)
    with open(out / "inputs.csv", newline="") as handle:
        listed = [r["input"] for r in csv.DictReader(handle)]
    assert listed[:2] == [pseudonym, pseudonym] and listed[3] == given[3]  # a PNG keeps its path
    assert listed[4] == "input 5"


def test_a_dicom_file_without_pixels_is_one_line(inputs: dict[str, Path], tmp_path: Path) -> None:
    ds = pydicom.dcmread(sagittal_t2_files(inputs["study"])[0])
    del ds.PixelData
    ds.save_as(tmp_path / "no-pixels.dcm")
    result = CliRunner().invoke(
        app, ["localize", str(tmp_path / "no-pixels.dcm"), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert "cannot read the image" in result.output, result.output
