"""De-identification after PS3.15 Annex E (basic profile)."""

from __future__ import annotations

import io

import pytest
from helpers.dicom_leaks import TOP_LEVEL_LEAKS, identified_mr, leaky_mr

from lumbar.ingest.confidentiality import date_shift_days, shift_date
from lumbar.ingest.deid import BurnedInAnnotation, deidentify, keyed_uid

SECRET = b"test-secret"


def test_identifiers_are_gone_everywhere() -> None:
    from pydicom.filewriter import dcmwrite

    ds = deidentify(identified_mr(), "P0123456789ab", SECRET)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    for secret_text in (
        b"DOE",
        b"MRN-778899",
        b"19700101",
        b"ACC-123",
        b"Fallujah",
        b"HOUSE",
        b"TECH^ONE",
        b"20200505",
        b"HIDDEN",
        b"1.2.3.999",
    ):
        assert secret_text not in data, secret_text
    assert ds.PatientID == ds.PatientName == "P0123456789ab"
    assert ds.PatientIdentityRemoved == "YES"
    code = ds.DeidentificationMethodCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")
    assert "Annex E" in ds.DeidentificationMethod
    assert 0x60003000 not in ds
    assert ds.PatientBirthDate == ""  # type 2: present, empty
    # Modified Dates option: the study date moves back by the patient's keyed shift.
    days = date_shift_days("P0123456789ab", SECRET)
    assert ds.StudyDate == shift_date("20200505", days) and 1 <= days <= 3650
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107", "113105"]


def test_uids_are_remapped_consistently() -> None:
    original = identified_mr()
    a = deidentify(identified_mr(), "P1", SECRET)
    b = deidentify(identified_mr(), "P1", SECRET)
    assert a.SOPInstanceUID != original.SOPInstanceUID
    assert a.SOPInstanceUID == b.SOPInstanceUID == keyed_uid(original.SOPInstanceUID, SECRET)
    assert a.StudyInstanceUID.startswith("2.25.")
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.SOPClassUID == original.SOPClassUID  # class UIDs are constants, not identifiers
    assert keyed_uid(original.SOPInstanceUID, b"other") != a.SOPInstanceUID


def test_pixels_and_geometry_survive() -> None:
    original = identified_mr()
    ds = deidentify(identified_mr(), "P1", SECRET)
    assert (ds.pixel_array == original.pixel_array).all()
    assert ds.ImagePositionPatient == original.ImagePositionPatient
    assert len(keyed_uid("1.2.3", SECRET)) <= 64


def test_burned_in_annotation_is_refused() -> None:
    ds = identified_mr()
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(BurnedInAnnotation):
        deidentify(ds, "P1", SECRET)


def test_no_marker_survives_anywhere() -> None:
    from pydicom.filewriter import dcmwrite

    ds = deidentify(leaky_mr(), "P0123456789ab", SECRET)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    survivors = sorted(
        keyword
        for number, keyword in enumerate(TOP_LEVEL_LEAKS)
        if keyword in ds and str(ds[keyword].value or "") not in ("", "REMOVED")
    )
    assert survivors == []
    assert b"LEAK" not in data and b"MRN-778899" not in data and b"DOE" not in data
    assert 0x00089998 not in ds
    assert "AcquisitionContextSequence" not in ds or not ds.AcquisitionContextSequence
