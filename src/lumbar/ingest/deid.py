"""De-identification of DICOM datasets after PS3.15 Annex E, Basic Application Level
Confidentiality Profile, for `lumbar ingest --export-dicom`.

Actions follow Table E.1-1: D (replace with a dummy), Z (empty), X (remove), U (replace UID with
a consistent keyed one). Beyond the explicit table, every person name, date, time and
date-time anywhere in the dataset (sequences included) is removed, every private element is
removed, and every instance UID is remapped, which is what the profile requires for attributes
the table lists by group or that a vendor hides in sequences. The method is recorded in
De-identification Method (Code Sequence) with DCM 113100.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

# (keyword, action) for the attributes that Table E.1-1 names and a lumbar MR can carry.
# Dates, times and person names not listed here are removed by the generic sweep.
BASIC_PROFILE: dict[str, str] = {
    "AccessionNumber": "Z",
    "AcquisitionComments": "X",
    "AcquisitionDeviceProcessingDescription": "X",
    "ActualHumanPerformersSequence": "X",
    "AdditionalPatientHistory": "X",
    "AdmissionID": "X",
    "AdmittingDiagnosesCodeSequence": "X",
    "AdmittingDiagnosesDescription": "X",
    "Allergies": "X",
    "Arbitrary": "X",
    "AuthorObserverSequence": "X",
    "BranchOfService": "X",
    "CommentsOnThePerformedProcedureStep": "X",
    "ConfidentialityConstraintOnPatientDataDescription": "X",
    "ContentCreatorName": "Z",
    "ContentCreatorIdentificationCodeSequence": "X",
    "ContributionDescription": "X",
    "CountryOfResidence": "X",
    "CurrentPatientLocation": "X",
    "CustodialOrganizationSequence": "X",
    "DerivationDescription": "X",
    "DeviceSerialNumber": "X",
    "DeviceUID": "U",
    "DigitalSignaturesSequence": "X",
    "DischargeDiagnosisDescription": "X",
    "EthnicGroup": "X",
    "FillerOrderNumberImagingServiceRequest": "X",
    "FrameComments": "X",
    "GantryID": "X",
    "GeneratorID": "X",
    "IconImageSequence": "X",
    "IdentifyingComments": "X",
    "ImageComments": "X",
    "ImagePresentationComments": "X",
    "ImagingServiceRequestComments": "X",
    "Impressions": "X",
    "InstitutionAddress": "X",
    "InstitutionalDepartmentName": "X",
    "InstitutionCodeSequence": "X",
    "InstitutionName": "X",
    "InsurancePlanIdentification": "X",
    "IntendedRecipientsOfResultsIdentificationSequence": "X",
    "InterpretationApproverSequence": "X",
    "InterpretationAuthor": "X",
    "InterpretationDiagnosisDescription": "X",
    "InterpretationIDIssuer": "X",
    "InterpretationRecorder": "X",
    "InterpretationText": "X",
    "InterpretationTranscriber": "X",
    "IssuerOfAdmissionID": "X",
    "IssuerOfPatientID": "X",
    "IssuerOfServiceEpisodeID": "X",
    "MedicalAlerts": "X",
    "MedicalRecordLocator": "X",
    "MilitaryRank": "X",
    "ModifiedAttributesSequence": "X",
    "ModifyingDeviceID": "X",
    "ModifyingDeviceManufacturer": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "NamesOfIntendedRecipientsOfResults": "X",
    "Occupation": "X",
    "OperatorIdentificationSequence": "X",
    "OperatorsName": "X",
    "OrderCallbackPhoneNumber": "X",
    "OrderEnteredBy": "X",
    "OrderEntererLocation": "X",
    "OriginalAttributesSequence": "X",
    "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X",
    "PatientAddress": "X",
    "PatientAge": "X",
    "PatientBirthDate": "Z",
    "PatientBirthName": "X",
    "PatientBirthTime": "X",
    "PatientComments": "X",
    "PatientInstitutionResidence": "X",
    "PatientInsurancePlanCodeSequence": "X",
    "PatientMotherBirthName": "X",
    "PatientName": "Z",
    "PatientPrimaryLanguageCodeSequence": "X",
    "PatientReligiousPreference": "X",
    "PatientSex": "Z",
    "PatientSexNeutered": "X",
    "PatientSize": "X",
    "PatientState": "X",
    "PatientTelephoneNumbers": "X",
    "PatientTransportArrangements": "X",
    "PatientWeight": "X",
    "PerformedLocation": "X",
    "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepID": "X",
    "PerformingPhysicianIdentificationSequence": "X",
    "PerformingPhysicianName": "X",
    "PersonAddress": "X",
    "PersonIdentificationCodeSequence": "X",
    "PersonName": "X",
    "PersonTelephoneNumbers": "X",
    "PhysicianApprovingInterpretation": "X",
    "PhysiciansOfRecord": "X",
    "PhysiciansOfRecordIdentificationSequence": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X",
    "PlacerOrderNumberImagingServiceRequest": "X",
    "PlateID": "X",
    "PreMedication": "X",
    "PregnancyStatus": "X",
    "ProtocolName": "X",
    "ReasonForTheImagingServiceRequest": "X",
    "ReasonForStudy": "X",
    "ReferencedDigitalSignatureSequence": "X",
    "ReferencedImageSequence": "X",
    "ReferencedPatientAliasSequence": "X",
    "ReferencedPatientSequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X",
    "ReferencedSOPInstanceMACSequence": "X",
    "ReferencedStudySequence": "X",
    "ReferringPhysicianAddress": "X",
    "ReferringPhysicianIdentificationSequence": "X",
    "ReferringPhysicianName": "Z",
    "ReferringPhysicianTelephoneNumbers": "X",
    "RegionOfResidence": "X",
    "RequestAttributesSequence": "X",
    "RequestedContrastAgent": "X",
    "RequestedProcedureComments": "X",
    "RequestedProcedureDescription": "X",
    "RequestedProcedureID": "X",
    "RequestedProcedureLocation": "X",
    "RequestingPhysician": "X",
    "RequestingService": "X",
    "ResponsibleOrganization": "X",
    "ResponsiblePerson": "X",
    "ResultsComments": "X",
    "ResultsDistributionListSequence": "X",
    "ResultsIDIssuer": "X",
    "ScheduledHumanPerformersSequence": "X",
    "ScheduledPatientInstitutionResidence": "X",
    "ScheduledPerformingPhysicianIdentificationSequence": "X",
    "ScheduledPerformingPhysicianName": "X",
    "ScheduledProcedureStepDescription": "X",
    "ServiceEpisodeDescription": "X",
    "ServiceEpisodeID": "X",
    "SeriesDescription": "X",
    "SmokingStatus": "X",
    "SourceImageSequence": "X",
    "SpecialNeeds": "X",
    "StationName": "X",
    "StudyComments": "X",
    "StudyDescription": "X",
    "StudyID": "Z",
    "StudyIDIssuer": "X",
    "TextComments": "X",
    "TextString": "X",
    "TopicAuthor": "X",
    "TopicKeywords": "X",
    "TopicSubject": "X",
    "TopicTitle": "X",
    "VerifyingObserverIdentificationCodeSequence": "X",
    "VerifyingObserverName": "X",
    "VerifyingObserverSequence": "X",
    "VerifyingOrganization": "X",
    "VisitComments": "X",
}
# UIDs that identify things (instances, series, studies, frames of reference); class and
# syntax UIDs are standard constants and stay.
_KEEP_UIDS = frozenset(
    {
        "SOPClassUID",
        "ReferencedSOPClassUID",
        "MediaStorageSOPClassUID",
        "TransferSyntaxUID",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
    }
)
_REMOVE_VRS = frozenset({"PN", "DA", "DT", "TM"})
_TYPE2_EMPTY = frozenset(
    {
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ReferringPhysicianName",
        "StudyID",
        "ContentDate",
        "ContentTime",
        "SeriesDate",
        "SeriesTime",
    }
)
DEID_METHOD = "lumbar: PS3.15 Annex E Basic Confidentiality Profile"  # LO: <= 64
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")


class BurnedInAnnotation(Exception):
    """The image declares burned-in text, which header de-identification cannot remove."""


def keyed_uid(uid: str, secret: bytes) -> str:
    """A new UID under the UUID root 2.25, keyed by the secret so the mapping is consistent."""
    digest = hmac.new(secret, b"uid:" + uid.strip().encode("ascii", "replace"), hashlib.sha256)
    return "2.25." + str(int.from_bytes(digest.digest()[:16], "big"))


def deidentify(ds: Any, pseudonym: str, secret: bytes) -> Any:
    """De-identify `ds` in place and return it; PatientID and PatientName become `pseudonym`.

    `secret` keys the UID remapping, so one source UID always maps to the same new UID.

    Raises:
        BurnedInAnnotation: BurnedInAnnotation is YES (pixels may show the patient's name).
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise BurnedInAnnotation("image has burned-in annotation; not exported as DICOM")
    ds.remove_private_tags()
    _apply(ds, secret)
    for group in range(0x6000, 0x6020, 2):  # overlays may hold burned-in text: remove data
        for element in (0x3000, 0x4000):
            tag = (group << 16) | element
            if tag in ds:
                del ds[tag]
    ds.PatientName = pseudonym
    ds.PatientID = pseudonym
    for keyword in (
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        "StudyDate",
        "StudyTime",
    ):
        setattr(ds, keyword, "")
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEID_METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _apply(ds: Any, secret: bytes) -> None:
    """Apply the table and the generic sweeps to one dataset level, recursing into sequences."""
    for elem in list(ds):
        keyword = elem.keyword
        action = BASIC_PROFILE.get(keyword)
        if action == "X" or (
            action is None and elem.VR in _REMOVE_VRS and keyword not in _TYPE2_EMPTY
        ):
            del ds[elem.tag]
            continue
        if action == "Z" or keyword in _TYPE2_EMPTY:
            elem.value = "" if elem.VR != "SQ" else []
            continue
        if elem.VR == "UI" and keyword not in _KEEP_UIDS and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            mapped = [keyed_uid(str(v), secret) for v in values]
            elem.value = mapped if elem.VM > 1 else mapped[0]
            continue
        if elem.VR == "SQ":
            for item in elem.value:
                _apply(item, secret)
