"""`lumbar predict` on phantom DICOM studies: outputs, identifiers, and bad studies."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from helpers.tiny_run import make_tiny_run
from typer.testing import CliRunner

from lumbar.errors import UserError
from lumbar.inference.predict import Predictor, run_roi


def _series_dir(study: Path, description: str) -> Path:
    for series in sorted(study.iterdir()):
        first = sorted(series.iterdir())[0]
        if pydicom.dcmread(first, stop_before_pixels=True).SeriesDescription == description:
            return series
    raise AssertionError(f"no {description} series")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_run(
        tmp_path_factory.mktemp("run") / "effnet", "efficientnet_lite0", roi="grid"
    )


def test_predict_study_writes_json_csv_html_and_heatmaps(
    phantom_cohort: Path, tiny_run: Path, tmp_path: Path
) -> None:
    study = phantom_cohort / "patient-0001"
    original_id = pydicom.dcmread(
        next(_series_dir(study, "T2 AX").iterdir()), stop_before_pixels=True
    ).PatientID
    predictor = Predictor.load(tiny_run)
    result = predictor.predict_study(study, tmp_path / "out")
    assert [d["level"] for d in result["discs"]] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    for disc in result["discs"]:
        assert sum(disc["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert disc["predicted"] in ("normal", "abnormal")
        assert (tmp_path / "out" / disc["image"]).is_file()
        assert (tmp_path / "out" / disc["heatmap"]).is_file()
    assert result["model"]["roi"] == "grid" and result["model"]["roi_source"] == "run"
    assert result["series_found"] == ["axial_t2", "myelo", "sagittal_t2"]
    saved = json.loads((tmp_path / "out" / "prediction.json").read_text())
    assert saved["study"].startswith("P") and "_images" not in saved
    with open(tmp_path / "out" / "prediction.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and set(rows[0]) >= {"level", "predicted", "p_normal", "p_abnormal"}
    page = (tmp_path / "out" / "summary.html").read_text()
    assert page.count("<img ") == 10 and "heatmaps/L4-L5.png" in page
    for path in (tmp_path / "out").rglob("*"):  # no original identifier anywhere
        if path.is_file():
            assert original_id.encode() not in path.read_bytes()


def test_run_roi_reads_the_manifest_crop(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,patient_id,view,roi\na.png,P1,myelo,none\nb.png,P1,axial_t2,grid\n")
    assert run_roi({"roi": "none", "manifest": str(manifest)}) == ("grid", "manifest")
    assert run_roi({"roi": "center:0.5"}) == ("center:0.5", "run")
    assert run_roi({"roi": "none", "manifest": str(tmp_path / "gone.csv")}) == ("none", "unknown")


def test_study_without_axial_t2_names_what_is_missing(
    phantom_cohort: Path, tiny_run: Path, tmp_path: Path
) -> None:
    study = tmp_path / "study"
    shutil.copytree(phantom_cohort / "patient-0002", study)
    shutil.rmtree(_series_dir(study, "T2 AX"))
    with pytest.raises(
        UserError, match=r"no usable axial T2 series.*found only: myelo, sagittal_t2"
    ):
        Predictor.load(tiny_run).predict_study(study, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def no_bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins for the bundled localiser and grader (they find no disc on these studies), so
    these tests are about the axial run alone."""
    from helpers.sagittal_models import ToyGrader, TruthFinder

    monkeypatch.setattr(
        "lumbar.inference.batch.load_sagittal", lambda *a, **k: (TruthFinder(), ToyGrader())
    )


def test_cli_one_line_errors(tmp_path: Path, tiny_run: Path, no_bundled: None) -> None:
    from lumbar.cli import app

    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    out = ["--out", str(tmp_path / "o")]
    result = runner.invoke(app, ["predict", str(empty), "--model", str(tiny_run), *out])
    assert result.exit_code == 2
    assert "error: input 1: the folder holds no readable DICOM image" in result.output
    result = runner.invoke(app, ["predict", str(empty), "--model", str(empty), *out])
    assert isinstance(result.exception, UserError) and "not a run folder" in str(result.exception)


def test_cli_predict(
    phantom_cohort: Path, tiny_run: Path, tmp_path: Path, no_bundled: None
) -> None:
    from lumbar.cli import app

    study = str(phantom_cohort / "patient-0003")
    result = CliRunner().invoke(
        app, ["predict", study, "--model", str(tiny_run), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "L4-L5: axial" in result.output and (tmp_path / "o" / "summary.html").is_file()
    with open(tmp_path / "o" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["level"] for r in rows] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert {r["input"] for r in rows} == {rows[0]["name"]} and rows[0]["axial_predicted"]
    saved = json.loads((tmp_path / "o" / rows[0]["name"] / "prediction.json").read_text())
    assert "no discs found" in saved["sagittal_error"]
    assert (tmp_path / "o" / rows[0]["name"] / "axial" / "L4-L5-gradcam.png").is_file()


def test_a_disc_roi_run_predicts_on_crops_around_each_localised_disc(
    phantom_cohort: Path, tmp_path: Path
) -> None:
    run = make_tiny_run(tmp_path / "disc-run", "mobilenet_v2", roi="disc:60")
    predictor = Predictor.load(run)
    result = predictor.predict_study(phantom_cohort / "patient-0002", sources=True)
    assert result["model"]["roi"] == "disc:60"
    assert [d["level"] for d in result["discs"]] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    for level, info in result["_sources"]["axial"].items():
        left, top, right, bottom = info["box"]
        assert info["display_size"] == (224, 224)  # 60 mm resampled to the disc ROI's size
        width = right - left  # 60 mm in this image's pixels
        assert 0.8 * width < bottom - top < 1.25 * width, level
    with pytest.raises(UserError, match="needs each image's disc position"):
        predictor.probabilities([tmp_path / "any.png"])
