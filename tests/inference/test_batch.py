"""`lumbar predict INPUT... --out DIR`: real SPIDER slices, a phantom study and bad inputs in
one call; outputs, CSV columns, exact input strings, pseudonymous names, the summary page,
and the exit code."""

from __future__ import annotations

import csv
import json
import shutil
import socket
from pathlib import Path

import pydicom
import pytest
from helpers.sagittal_models import TruthFinder, toy_models
from helpers.shared_data import SHARED_DATA
from typer.testing import CliRunner

from lumbar.data.spider import read_spider
from lumbar.inference import batch as batch_module
from lumbar.inference.batch import predict_inputs

SPIDER = SHARED_DATA / "spider-sagittal"
SPIDER_IMAGES = ["104_t2.png", "106_t1.png"]
needs_spider = pytest.mark.skipif(
    not (SPIDER / "discs.csv").is_file(), reason=f"SPIDER slices not found at {SPIDER}"
)


@pytest.fixture(scope="module")
def phantom(phantom_cohort: Path) -> Path:
    return phantom_cohort / "patient-0001"


@pytest.fixture(scope="module")
def finder(phantom_cohort: Path, phantom: Path) -> TruthFinder:
    truth = TruthFinder()
    if (SPIDER / "discs.csv").is_file():
        truth.add_spider(SPIDER, SPIDER_IMAGES)
    patient = _patient_id(phantom)
    truth.add_phantom(batch_module._study_slices(phantom)[0], phantom_cohort / "discs.csv", patient)
    return truth


def _patient_id(study: Path) -> str:
    first = next(p for p in sorted(study.rglob("*")) if p.is_file())
    return str(pydicom.dcmread(first, stop_before_pixels=True).PatientID)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@needs_spider
def test_images_study_and_bad_file_in_one_call(
    finder: TruthFinder, phantom: Path, tmp_path: Path
) -> None:
    images = [str(SPIDER / "images" / name) for name in SPIDER_IMAGES]
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    dicom_slice = tmp_path / "slice.dcm"  # the study's central sagittal slice, on its own
    shutil.copy(batch_module._study_slices(phantom)[1], dicom_slice)
    inputs = [*images, str(phantom), str(bad), str(dicom_slice)]
    lines: list[str] = []
    calls = len(finder.calls)
    out = tmp_path / "out"
    batch = predict_inputs(inputs, out, toy_models(finder), echo=lines.append)

    # one localiser batch: 2 PNGs + 3 study slices + 1 DICOM slice
    assert finder.calls[calls:] == [2 + 3 + 1]
    assert batch.failed == 1 and lines == ["input 4: " + batch.inputs[3].error]
    assert "not an image" in lines[0]
    rows = _rows(out / "predictions.csv")
    assert list(rows[0])[:7] == ["input", "name", "level", "x", "y", "confidence", "p_abnormal"]
    assert {"p_bulging", "p_herniation", "p_narrowing", "pfirrmann", "p_pfirrmann_5"} <= set(
        rows[0]
    )
    assert next(r["input"] for r in rows if r["name"] == "104_t2") == images[0]
    study_name = next(r["name"] for r in rows if r["name"] not in ("104_t2", "106_t1"))
    slice_name = f"{study_name}-2"  # one patient: the slice is named after the same pseudonym
    assert {r["input"] for r in rows} == {*images, study_name, slice_name}  # images as given
    spider_levels = {
        name: [r["level"] for r in rows if r["input"].endswith(name)] for name in SPIDER_IMAGES
    }
    assert spider_levels["104_t2.png"][-1] == "L5-S1" and len(spider_levels["104_t2.png"]) >= 5
    study_rows = [r for r in rows if r["input"] == study_name]
    assert [r["level"] for r in study_rows] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    for r in rows:
        assert 0.0 <= float(r["p_abnormal"]) <= 1.0 and float(r["x"]) > 0 and float(r["y"]) > 0

    assert study_name.startswith("P") and study_name != phantom.name
    for name in ("104_t2", "106_t1", study_name):
        folder = out / name
        saved = json.loads((folder / "prediction.json").read_text())
        assert saved["name"] == name and (folder / "overlay.png").is_file()
        for disc in saved["discs"]:
            assert (folder / disc["gradcam"]).is_file()
            assert len(disc["box"]) == 4 and abs(sum(disc["pfirrmann"].values()) - 1) < 1e-3
    study = json.loads((out / study_name / "prediction.json").read_text())
    assert study["image"]["slices"] == 3 and len(study["discs"][0]["position_mm"]) == 3
    single = json.loads((out / slice_name / "prediction.json").read_text())
    assert (
        single["kind"] == "image" and single["image"]["spacing_mm"] == study["image"]["spacing_mm"]
    )
    for alone, fused in zip(single["discs"], study["discs"], strict=True):
        assert alone["level"] == fused["level"]  # same slice, same discs, in patient mm too
        assert alone["position_mm"] == pytest.approx(fused["position_mm"], abs=0.05)
    patient = _patient_id(phantom)
    for path in out.rglob("*"):  # the phantom's PatientID appears in no output
        if path.is_file() and path.name != ".lumbar-secret":
            assert patient.encode() not in path.read_bytes()

    statuses = {r["input"]: r["status"] for r in _rows(out / "inputs.csv")}
    assert statuses["input 4"].startswith("failed: not an image")
    page = (out / "summary.html").read_text()
    assert "not for clinical use" in page and "src='data:image/jpeg;base64," in page
    assert "doi:10.1038/s41597-024-03090-w" in page  # SPIDER's attribution
    for name in ("104_t2", "106_t1", study_name):
        section = page.split(f"<h2>{name} ")[1].split("</section>")[0]
        levels = [r["level"] for r in rows if r["name"] == name]
        assert all(f"<td>{level}</td>" in section for level in levels)
    assert "input 4: not an image" in page and str(bad) not in page


def test_no_spine_no_sagittal_series_and_missing_input(
    finder: TruthFinder, phantom_cohort: Path, tmp_path: Path
) -> None:
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("L", (256, 256), 40).save(blank)  # the finder knows no disc here
    no_sagittal = tmp_path / "study"
    shutil.copytree(phantom_cohort / "patient-0002", no_sagittal)
    for series in list(no_sagittal.iterdir()):
        first = sorted(series.iterdir())[0]
        if "SAG" in str(pydicom.dcmread(first, stop_before_pixels=True).SeriesDescription):
            shutil.rmtree(series)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/dicom-web/studies/1.2.826.0.1.3680043.8.498.12345"
    lines: list[str] = []
    inputs = [str(blank), str(no_sagittal), str(tmp_path / "gone.png"), url]
    batch = predict_inputs(inputs, tmp_path / "out", toy_models(finder), echo=lines.append)
    assert batch.failed == 4 and len(lines) == 4
    assert "no discs found" in lines[0]
    assert lines[1].startswith("P") and lines[1].endswith(": no sagittal T2 series found")
    assert lines[2].endswith("no such file or folder")
    assert lines[3].startswith(f"http://127.0.0.1:{port}/dicom-web/studies/-: cannot reach")
    assert "12345" not in (tmp_path / "out" / "inputs.csv").read_text()  # no study UID
    assert _rows(tmp_path / "out" / "predictions.csv") == []
    assert not [p for p in (tmp_path / "out").iterdir() if p.is_dir()]


@needs_spider
def test_cli_exit_code_and_no_gradcam(
    finder: TruthFinder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lumbar.cli import app

    monkeypatch.setattr(batch_module, "load_predict_models", lambda *a, **k: toy_models(finder))
    image = str(SPIDER / "images" / SPIDER_IMAGES[0])
    runner = CliRunner()
    ok = runner.invoke(app, ["predict", image, "--out", str(tmp_path / "a"), "--no-gradcam"])
    assert ok.exit_code == 0, ok.output
    assert "104_t2 L5-S1: P(abnormal)" in ok.output and "1 of 1 inputs predicted" in ok.output
    assert not (tmp_path / "a" / "104_t2" / "gradcam").exists()
    bad = runner.invoke(
        app, ["predict", image, str(tmp_path / "nope.png"), "--out", str(tmp_path / "b")]
    )
    assert bad.exit_code == 2 and "nope.png: no such file or folder" in bad.output
    assert (tmp_path / "b" / "104_t2" / "prediction.json").is_file()
    help_text = runner.invoke(app, ["predict", "--help"]).output
    assert "Exit code" in help_text


@needs_spider
def test_inputs_in_chunks_keep_distinct_names(
    finder: TruthFinder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_module, "CHUNK", 2)
    images = [str(SPIDER / "images" / name) for name in [*SPIDER_IMAGES, SPIDER_IMAGES[0]]]
    calls = len(finder.calls)
    batch = predict_inputs(images, tmp_path / "out", toy_models(finder), gradcam=False)
    assert finder.calls[calls:] == [2, 1]  # one localiser batch per chunk
    assert [o.name for o in batch.inputs] == ["104_t2", "106_t1", "104_t2-2"]
    assert {r["name"] for r in _rows(tmp_path / "out" / "predictions.csv")} == {
        "104_t2", "106_t1", "104_t2-2"
    }  # fmt: skip
    assert not list((tmp_path / "out").rglob("gradcam"))


@needs_spider
def test_bundled_models_end_to_end(phantom: Path, tmp_path: Path) -> None:
    """The shipped localiser and grader, no stand-ins: a real slice and a phantom study are
    graded, a blank image gets no prediction."""
    from PIL import Image

    from lumbar.inference.batch import load_predict_models

    blank = tmp_path / "blank.png"
    Image.new("L", (320, 320), 0).save(blank)
    image = str(SPIDER / "images" / SPIDER_IMAGES[0])
    lines: list[str] = []
    models = load_predict_models(None)
    batch = predict_inputs(
        [image, str(phantom), str(blank)], tmp_path / "out", models, gradcam=False,
        echo=lines.append,
    )  # fmt: skip
    real, study, empty = batch.inputs
    assert not real.error and not study.error, (real.error, study.error)
    assert empty.error and "no disc" in empty.error and lines == [f"{blank}: {empty.error}"]
    for outcome in (real, study):
        levels = [d["level"] for d in outcome.prediction["discs"]]
        assert len(levels) >= 4 and "L5-S1" in levels and "L4-L5" in levels
        for d in outcome.prediction["discs"]:
            assert 0.0 <= d["p_abnormal"] <= 1.0 and d["confidence"] >= 0.5
            assert abs(sum(d["pfirrmann"].values()) - 1.0) < 1e-3
    truth = {d.level: d.centre for s in read_spider(SPIDER) if s.image.name == SPIDER_IMAGES[0]
             for d in s.discs}  # fmt: skip
    for d in real.prediction["discs"]:  # found where SPIDER boxed them (within 15 px)
        if d["level"] in truth:
            assert (
                abs(d["x"] - truth[d["level"]][0]) < 15 and abs(d["y"] - truth[d["level"]][1]) < 15
            )
    page = (tmp_path / "out" / "summary.html").read_text()
    assert "doi:10.1038/s41597-024-03090-w" in page and "not for clinical use" in page
    assert "Intended use: " in page  # from the bundled models' cards


def test_structured_outputs_of_a_sagittal_study(
    finder: TruthFinder, phantom: Path, tmp_path: Path
) -> None:
    """--dicom-sr and --fhir on a study graded by the sagittal models alone: an SR whose discs
    lie on the central sagittal T2 image with the sagittal findings, exactly as prediction.json
    says, an overlay series, a FHIR report; research identity (no PatientID)."""
    from helpers.structured import dciodvfy_errors

    from lumbar.structured.export import StructuredOptions, sagittal_findings
    from lumbar.structured.fhir import read_fhir
    from lumbar.structured.sr import read_sr

    options = StructuredOptions(dicom_sr=tmp_path / "sr", fhir=tmp_path / "report.json")
    out = tmp_path / "out"
    batch = predict_inputs([str(phantom)], out, toy_models(finder), structured=options)
    (outcome,) = batch.inputs
    assert not outcome.error, outcome.error
    sr_path = tmp_path / "sr" / outcome.name / "SR.dcm"
    discs = read_sr(sr_path)
    expected = outcome.prediction["discs"]
    assert [d.level for d in discs] == [d["level"] for d in expected]
    central = pydicom.dcmread(batch_module._study_slices(phantom)[1], stop_before_pixels=True)
    for read, disc in zip(discs, expected, strict=True):
        assert read.point == (disc["x"], disc["y"]) and read.axial_uid is None
        assert [(f.name, f.value, f.probability) for f in read.findings] == [
            (f.name, f.value, f.probability) for f in sagittal_findings(disc)
        ]
        assert {f.name for f in read.findings} == {
            "disc_abnormal", "pfirrmann", "bulging", "disc_herniation", "narrowing"
        }  # fmt: skip
        assert read.image_uid != central.SOPInstanceUID  # research identity: keyed UIDs
    overlays = sorted((tmp_path / "sr" / outcome.name).glob("overlay-*.dcm"))
    assert len(overlays) == 1  # one sagittal picture with every disc
    patient = _patient_id(phantom)
    for path in [sr_path, *overlays, tmp_path / "report.json"]:
        assert patient.encode() not in path.read_bytes()
    for path in (sr_path, overlays[0]):
        errors, output = dciodvfy_errors(path)
        assert not errors, output
    fhir = read_fhir((tmp_path / "report.json").read_text())
    assert sorted(fhir) == sorted(d["level"] for d in expected)


def test_no_patient_name_in_outputs_or_messages(
    finder: TruthFinder,
    phantom: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A study folder and a DICOM slice named after the patient: research outputs and messages
    carry the pseudonym, never the name (nor the slice's SOP UID file name)."""
    from lumbar.cli import app

    monkeypatch.setattr(batch_module, "load_predict_models", lambda *a, **k: toy_models(finder))
    named = tmp_path / "DOE_JANE_19650101"
    shutil.copytree(phantom, named)
    central = batch_module._study_slices(phantom)[1]
    sop_uid = str(pydicom.dcmread(central, stop_before_pixels=True).SOPInstanceUID)
    slices = tmp_path / "slices"
    slices.mkdir()
    shutil.copy(central, slices / f"{sop_uid}.dcm")
    shutil.copy(central, slices / "DOE_JANE_19650101.dcm")
    gone = tmp_path / "DOE_JANE_19650101_gone"  # fails before any pseudonym is known
    out = tmp_path / "out"
    inputs = [str(named), str(slices / f"{sop_uid}.dcm"), str(slices / "DOE_JANE_19650101.dcm")]
    result = CliRunner().invoke(app, ["predict", *inputs, str(gone), "--out", str(out)])
    assert result.exit_code == 2, result.output
    captured = capsys.readouterr()
    for text in (result.output, captured.out, captured.err):
        assert "DOE_JANE" not in text and sop_uid not in text
    written = [p for p in out.rglob("*") if p.is_file() and p.name != ".lumbar-secret"]
    assert written
    for path in written:
        assert "DOE_JANE" not in str(path.relative_to(out)) and sop_uid not in path.name
        data = path.read_bytes()
        assert b"DOE_JANE" not in data and sop_uid.encode() not in data, path
    rows = _rows(out / "inputs.csv")
    names = [r["name"] for r in rows]
    assert names[0].startswith("P") and names[1:3] == [f"{names[0]}-2", f"{names[0]}-3"]
    assert [r["input"] for r in rows] == [*names[:3], "input 4"]
    assert {r["input"] for r in _rows(out / "predictions.csv")} == set(names[:3])
    for name in names[:3]:
        assert json.loads((out / name / "prediction.json").read_text())["input"] == name
