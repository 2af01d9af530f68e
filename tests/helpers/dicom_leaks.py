"""DICOM datasets full of identifiers where a sender should not put them, shared by the
de-identification tests and the Orthanc cross-check (tests/ingest/test_deid.py,
tests/ingest/test_confidentiality.py)."""

from __future__ import annotations

from typing import Any


def identified_mr() -> Any:
    """pydicom's MR_small.dcm with a name, ID, dates, an institution and identifiers hidden in a
    sequence, a private tag and an overlay."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
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


def leaky_mr() -> Any:
    """MR_small with identifying markers in 47 places, sequences and an unknown tag included."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = identified_mr()
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
