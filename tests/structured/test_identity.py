"""The two identity modes: research outputs never carry an identifier of the source; hospital
outputs always name their source study."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydicom
import pytest
from helpers.structured import SECRET, predicted_study, source_headers

from lumbar.errors import UserError
from lumbar.pseudonym import SECRET_ENV
from lumbar.structured.export import StructuredOptions, algorithm_info, export_structured
from lumbar.structured.identity import (
    IDENTIFYING_KEYWORDS,
    Identity,
    apply_identity,
    check_same_study,
    identifiers_of,
)


def _export(predicted, mode: Identity, out: Path):
    result, study, predictor = predicted
    options = StructuredOptions(dicom_sr=out / "sr", fhir=out / "report.json", identity=mode)
    info = algorithm_info(predictor.run_dir, predictor.config)
    return export_structured(result, study, info, predictor.classes, options)


def test_research_outputs_carry_no_source_identifier(predicted, tmp_path: Path) -> None:
    _, study, _ = predicted
    identifiers = set()
    for ds in source_headers(study):
        identifiers |= identifiers_of(ds)
    assert any("^" in value for value in identifiers)  # the phantom has a patient name
    done = _export(predicted, Identity.RESEARCH, tmp_path)
    assert len(done.files) == 1 + 6 + 1
    long_values = {value for value in identifiers if len(value) >= 6}  # "1000" occurs by chance
    for path in done.files:
        data = path.read_bytes()
        for value in long_values:
            assert value.encode() not in data, f"{path.name} carries a source identifier"
        assert all(value not in path.as_posix() for value in long_values)
        if path.suffix == ".dcm":  # and no identifying attribute keeps a source's value
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            for keyword in IDENTIFYING_KEYWORDS:
                value = str(ds.get(keyword, "") or "")
                assert not value or value not in identifiers, f"{path.name} {keyword}"
    sr = pydicom.dcmread(done.files[0])
    assert sr.PatientIdentityRemoved == "YES" and sr.PatientID.startswith("P")


def test_hospital_outputs_name_their_source_study(predicted, tmp_path: Path) -> None:
    _, study, _ = predicted
    source = source_headers(study)[0]
    done = _export(predicted, Identity.HOSPITAL, tmp_path)
    for path in done.files[:-1]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientID == source.PatientID and ds.PatientName == source.PatientName
    assert source.PatientID not in done.files[0].as_posix()  # file names stay pseudonymous


def test_a_mismatched_object_is_refused(predicted) -> None:
    prediction, evidence, _ = predicted_study(predicted, Identity.HOSPITAL)
    other = dataclasses.replace(prediction.identity, study_instance_uid="1.2.3.4")
    with pytest.raises(UserError, match="StudyInstanceUID differs"):
        check_same_study(evidence[0], other)


def test_research_refuses_burned_in_annotation(predicted) -> None:
    _, study, _ = predicted
    header = source_headers(study)[0]
    header.BurnedInAnnotation = "YES"
    with pytest.raises(UserError, match="burned-in annotation"):
        apply_identity([header], Identity.RESEARCH, b"secret")
    assert apply_identity([header], Identity.HOSPITAL, b"secret")[0].PatientID == header.PatientID


def test_research_sr_refers_to_the_deidentified_export(
    predicted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A research SR names the instances `lumbar ingest --export-dicom` writes with the same
    secret: the same pseudonym, study and SOP Instance UIDs."""
    from lumbar.ingest import IngestOptions, ingest

    _, study, _ = predicted
    prediction, _, _ = predicted_study(predicted, Identity.RESEARCH)
    monkeypatch.setenv(SECRET_ENV, SECRET)  # the secret `predicted` used
    ingest(study, tmp_path / "ingest", IngestOptions(workers=1, export_dicom=True))
    exported = [
        pydicom.dcmread(path, stop_before_pixels=True)
        for path in (tmp_path / "ingest").rglob("*.dcm")
    ]
    assert {ds.PatientID for ds in exported} == {prediction.identity.patient_id}
    assert {ds.StudyInstanceUID for ds in exported} == {prediction.identity.study_instance_uid}
    uids = {ds.SOPInstanceUID for ds in exported}
    assert {image.sop_instance_uid for image in prediction.images()} <= uids
