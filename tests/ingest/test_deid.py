"""De-identification after PS3.15 Annex E (basic profile)."""

from __future__ import annotations

import io

import pytest

from lumbar.ingest.confidentiality import date_shift_days, shift_date
from lumbar.ingest.deid import BurnedInAnnotation, deidentify, keyed_uid

SECRET = b"test-secret"


def _dataset(real_dicom):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(real_dicom("MR_small.dcm"))
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "MRN-778899"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "ACC-123"
    ds.InstitutionName = "Fallujah Teaching Hospital"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.OperatorsName = "TECH^ONE"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20200505"
    ds.StudyDescription = "MRI LUMBAR SPINE DOE"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.999"
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    item.PerformingPhysicianName = "HIDDEN^NAME"
    ds.ReferencedImageSequence = Sequence([item])
    ds.add_new(0x00291010, "LO", "private vendor text DOE")
    ds.add_new(0x60003000, "OW", b"\x00" * 8)  # overlay data
    return ds


def test_identifiers_are_gone_everywhere(real_dicom) -> None:
    from pydicom.filewriter import dcmwrite

    ds = deidentify(_dataset(real_dicom), "P0123456789ab", SECRET)
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


def test_uids_are_remapped_consistently(real_dicom) -> None:
    original = _dataset(real_dicom)
    a = deidentify(_dataset(real_dicom), "P1", SECRET)
    b = deidentify(_dataset(real_dicom), "P1", SECRET)
    assert a.SOPInstanceUID != original.SOPInstanceUID
    assert a.SOPInstanceUID == b.SOPInstanceUID == keyed_uid(original.SOPInstanceUID, SECRET)
    assert a.StudyInstanceUID.startswith("2.25.")
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.SOPClassUID == original.SOPClassUID  # class UIDs are constants, not identifiers
    assert keyed_uid(original.SOPInstanceUID, b"other") != a.SOPInstanceUID


def test_pixels_and_geometry_survive(real_dicom) -> None:
    original = _dataset(real_dicom)
    ds = deidentify(_dataset(real_dicom), "P1", SECRET)
    assert (ds.pixel_array == original.pixel_array).all()
    assert ds.ImagePositionPatient == original.ImagePositionPatient
    assert len(keyed_uid("1.2.3", SECRET)) <= 64


def test_burned_in_annotation_is_refused(real_dicom) -> None:
    ds = _dataset(real_dicom)
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(BurnedInAnnotation):
        deidentify(ds, "P1", SECRET)


# Attributes a careless or hostile sender fills with identifiers: each gets a unique marker
# ("LEAK07"); the security review found most of them surviving --export-dicom (issue 17).
TOP_LEVEL_LEAKS = (
    "PerformedStationName",
    "PerformedStationAETitle",
    "ScheduledStationName",
    "ScheduledStationAETitle",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepLocation",
    "DetectorID",
    "SourceSerialNumber",
    "UniqueDeviceIdentifier",
    "PatientBirthDateInAlternativeCalendar",
    "PatientTelecomInformation",
    "PersonTelecomInformation",
    "HumanPerformerOrganization",
    "LabelText",
    "BarcodeValue",
    "StationName",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "OperatorsName",
    "PerformingPhysicianName",
    "ConsultingPhysicianName",
    "RequestingPhysician",
    "AdmissionID",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientMotherBirthName",
    "MilitaryRank",
    "Occupation",
    "AdditionalPatientHistory",
    "StudyComments",
    "ImageComments",
    "RequestedProcedureID",
    "DeviceSerialNumber",
    "GantryID",
    "CassetteID",
    "PlateID",
    "IssuerOfPatientID",
    "ReasonForStudy",
    "PerformedProcedureStepID",
    "StudyID",
)


def _leaky_dataset(real_dicom):
    """MR_small with identifying markers in 47 places, sequences and an unknown tag included."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = _dataset(real_dicom)
    for number, keyword in enumerate(TOP_LEVEL_LEAKS):
        vr = dictionary_VR(tag_for_keyword(keyword))
        value = f"LEAK{number:02d}"
        if keyword == "PerformedStationAETitle":
            value = "MRN-778899"  # the patient's ID, as in the review
        ds.add_new(tag_for_keyword(keyword), vr, value)
    content = Dataset()
    content.ValueType = "TEXT"
    content.TextValue = "LEAK50 patient DOE said"
    ds.ContentSequence = Sequence([content])
    text = Dataset()
    text.UnformattedTextValue = "LEAK51 DOE^JANE"
    layer = Dataset()
    layer.GraphicLayer = "LAYER"
    layer.TextObjectSequence = Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([layer])
    context = Dataset()
    context.ValueType = "TEXT"
    context.TextValue = "LEAK52"
    ds.AcquisitionContextSequence = Sequence([context])
    ds.add_new(0x00089998, "LO", "LEAK53")  # a public tag no dictionary knows
    return ds


def test_no_marker_survives_anywhere(real_dicom) -> None:
    from pydicom.filewriter import dcmwrite

    ds = deidentify(_leaky_dataset(real_dicom), "P0123456789ab", SECRET)
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
