"""The TID 1500 SR: written with highdicom, read back exactly, in the source study, valid for
dciodvfy."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
from helpers.structured import dciodvfy_errors, predicted_study, rich

from lumbar.structured.identity import Identity
from lumbar.structured.sr import build_sr, read_sr


def _written(sr, tmp_path: Path) -> Path:
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return path


def test_every_disc_round_trips_exactly(predicted, tmp_path: Path) -> None:
    prediction, evidence, _ = predicted_study(predicted, Identity.HOSPITAL)
    prediction = rich(prediction)
    discs = read_sr(_written(build_sr(prediction, evidence), tmp_path))
    assert len(discs) == len(prediction.discs) == 5
    for read, disc in zip(discs, prediction.discs, strict=True):
        assert read.level == disc.level
        assert read.image_uid == disc.image.sop_instance_uid
        assert read.axial_uid == disc.axial.sop_instance_uid
        assert read.point == disc.point
        assert _triples(read.findings) == _triples(disc.findings)
        assert read.algorithm_name == prediction.algorithm.name
        assert read.algorithm_version == prediction.algorithm.version
        assert read.model_card_sha256 == prediction.algorithm.model_card_sha256
    # the model's own finding (one per disc, as `lumbar predict` gives today)
    plain, evidence, _ = predicted_study(predicted, Identity.HOSPITAL)
    again = read_sr(_written(build_sr(plain, evidence), tmp_path))
    assert [_triples(r.findings) for r in again] == [_triples(d.findings) for d in plain.discs]


def _triples(findings) -> list[tuple[str, str, float]]:
    return [(f.name, f.value, f.probability) for f in findings]


def test_sr_is_in_the_source_study_and_references_its_instances(predicted, tmp_path) -> None:
    prediction, evidence, _ = predicted_study(predicted, Identity.HOSPITAL)
    _, study, _ = predicted
    ds = pydicom.dcmread(_written(build_sr(prediction, evidence), tmp_path))
    source = pydicom.dcmread(next((study / "SE0005").iterdir()), stop_before_pixels=True)
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.PatientID == source.PatientID and ds.PatientName == source.PatientName
    assert ds.SOPClassUID == hd.sr.Comprehensive3DSR.from_dataset(ds).SOPClassUID
    referenced = {
        item.ReferencedSOPInstanceUID
        for study_item in ds.CurrentRequestedProcedureEvidenceSequence
        for series in study_item.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert referenced == {image.sop_instance_uid for image in prediction.images()}
    assert ds.CompletionFlag == "COMPLETE" and ds.VerificationFlag == "UNVERIFIED"
    # same prediction, same object: a PACS replaces rather than duplicates
    assert build_sr(prediction, evidence).SOPInstanceUID == ds.SOPInstanceUID


def test_dciodvfy_reports_no_error(predicted, tmp_path: Path) -> None:
    for mode in Identity:
        prediction, evidence, _ = predicted_study(predicted, mode)
        errors, output = dciodvfy_errors(_written(build_sr(rich(prediction), evidence), tmp_path))
        assert errors == [], output
