"""`lumbar predict` end to end on a real PACS (Orthanc): a phantom study is fetched by WADO-RS,
graded, and its SR and overlay series stored back into the same study by STOW-RS; the SR read
back from Orthanc with highdicom holds every disc's findings exactly. Bad inputs (a study with
no disc, an unknown study, an unreachable or unsuitable PACS) give one line, exit code 2, and
store nothing."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from helpers.orthanc import free_port, get_json, running_orthanc, upload_files

from lumbar.ingest.read import iter_files
from lumbar.structured.fhir import read_fhir
from lumbar.structured.sr import read_sr

pytestmark = pytest.mark.slow


def _uid(study: Path) -> str:
    first = next(p for p in iter_files(study) if p.suffix == ".dcm" or not p.suffix)
    return str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)


@pytest.fixture(scope="module")
def pacs(
    tmp_path_factory: pytest.TempPathFactory, phantom_cohort: Path
) -> Iterator[tuple[str, str, str]]:
    """(Orthanc REST root, UID of a full phantom study, UID of a study with no axial series)."""
    no_axial = tmp_path_factory.mktemp("no-axial") / "study"
    shutil.copytree(phantom_cohort / "patient-0003", no_axial)
    for series in list(no_axial.iterdir()):
        if series.is_dir():
            first = next(series.iterdir())
            if "AX" in str(pydicom.dcmread(first, stop_before_pixels=True).SeriesDescription):
                shutil.rmtree(series)
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), dicomweb=True) as base:
        upload_files(base, iter_files(phantom_cohort / "patient-0002"))
        upload_files(base, iter_files(no_axial))
        yield base, _uid(phantom_cohort / "patient-0002"), _uid(no_axial)


def _lumbar(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from lumbar.cli import main

    monkeypatch.setattr(sys, "argv", ["lumbar", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as end:
        code = int(end.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _instances(base: str) -> int:
    return len(get_json(f"{base}/instances"))


def test_predict_stores_sr_and_overlay_into_the_study(
    pacs, tiny_run, tmp_path, monkeypatch, capsys
) -> None:
    base, uid, _ = pacs
    before = _instances(base)
    code, out, err = _lumbar(
        ["predict", f"{base}/dicom-web/studies/{uid}", "--model", tiny_run, "--out",
         tmp_path / "out", "--stow", f"{base}/dicom-web", "--dicom-sr", tmp_path / "sr",
         "--fhir", tmp_path / "report.json", "--identity", "hospital"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "stored 7 of 7 objects" in out
    assert _instances(base) == before + 7
    assert len(get_json(f"{base}/studies")) == 2  # no new study: results joined their source
    series = get_json(f"{base}/dicom-web/studies/{uid}/series?Modality=SR")
    assert len(series) == 1
    from dicomweb_client import DICOMwebClient

    client = DICOMwebClient(f"{base}/dicom-web")
    (item,) = client.search_for_instances(study_instance_uid=uid, search_filters={"Modality": "SR"})
    sr = client.retrieve_instance(uid, item["0020000E"]["Value"][0], item["00080018"]["Value"][0])
    assert sr.StudyInstanceUID == uid
    discs = read_sr(sr)
    expected = json.loads((tmp_path / "out" / "prediction.json").read_text())["discs"]
    assert [d.level for d in discs] == [d["level"] for d in expected]
    for read, disc in zip(discs, expected, strict=True):
        (finding,) = read.findings
        assert (finding.name, finding.value, finding.probability) == (
            "disc_abnormal",
            disc["predicted"],
            disc["probability"],
        )
    local = read_sr(next((tmp_path / "sr").rglob("SR.dcm")))
    assert local == discs
    fhir = read_fhir((tmp_path / "report.json").read_text())
    assert {lv: f[0].probability for lv, f in fhir.items()} == {
        d["level"]: d["probability"] for d in expected
    }
    overlay = get_json(f"{base}/dicom-web/studies/{uid}/series?Modality=OT")
    assert len(overlay) == 1
    # predicting again on the study, which now holds our SR and overlay series: ingest ignores
    # them, and the same results keep their UIDs, so the PACS holds one copy
    code, out, err = _lumbar(
        ["predict", f"{base}/dicom-web/studies/{uid}", "--model", tiny_run,
         "--stow", f"{base}/dicom-web", "--identity", "hospital"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "stored 7 of 7 objects" in out and _instances(base) == before + 7


def test_bad_inputs_are_one_line_and_store_nothing(
    pacs, tiny_run, tmp_path, monkeypatch, capsys
) -> None:
    base, uid, no_axial = pacs
    web = f"{base}/dicom-web"
    before = _instances(base)
    cases = [
        (f"{web}/studies/{no_axial}", web, "hospital", "no usable axial T2 series"),
        (f"{web}/studies/1.2.826.0.1.3680043.8.498.777", web, "hospital", "holds no study"),
        (
            f"{web}/studies/{uid}",
            f"http://127.0.0.1:{free_port()}/dicom-web",
            "hospital",
            "cannot reach DICOMweb service",
        ),
        # research results are pseudonymised: the hospital PACS does not hold that study
        (f"{web}/studies/{uid}", web, "research", "holds no study .* nothing was stored"),
    ]
    for source, stow_url, identity, message in cases:
        code, _, err = _lumbar(
            ["predict", source, "--model", tiny_run, "--stow", stow_url, "--identity", identity],
            monkeypatch, capsys,
        )  # fmt: skip
        assert code == 2, (message, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert re.search(message, lines[0]), lines[0]
        assert uid not in lines[0]  # no hospital identifier in messages
    assert _instances(base) == before


def test_unknown_identity_mode_is_one_line(tiny_run, tmp_path, monkeypatch, capsys) -> None:
    code, _, err = _lumbar(
        ["predict", tmp_path, "--model", tiny_run, "--identity", "clinical"], monkeypatch, capsys
    )
    assert code == 2
    assert err.strip() == (
        "error: identity must be hospital or research, got 'clinical' (--identity)"
    )


def test_full_heatmap_keeps_the_part_of_a_disc_roi_box_inside_the_image() -> None:
    import numpy as np

    from lumbar.structured.export import _full_heatmap

    heat = np.ones((8, 8), dtype=np.float32)
    full = _full_heatmap(heat, (-4, -2, 4, 6), (10, 12))  # box reaches past the top-left corner
    assert full.shape == (10, 12)
    assert np.all(full[0:6, 0:4] == 1.0)
    assert np.isnan(full[6:, :]).all() and np.isnan(full[:, 4:]).all()
    inside = _full_heatmap(heat, (2, 1, 6, 5), (10, 12))
    assert np.all(inside[1:5, 2:6] == 1.0) and np.isnan(inside).sum() == 120 - 16
