"""De-identification of DICOM datasets for `lumbar ingest --export-dicom`: PS3.15 Annex E,
Basic Application Level Confidentiality Profile with the Retain Longitudinal Temporal
Information with Modified Dates and Clean Descriptors options, driven by the standard's table
(`lumbar.ingest.confidentiality`). Patients get their pseudonym as PatientID and PatientName;
the method is recorded in De-identification Method (Code Sequence) with the DCM codes of the
profile and of each option.
"""

from __future__ import annotations

from typing import Any

from lumbar.ingest.confidentiality import (
    PROFILE_CODES,
    DeidentificationProblem,
    apply_profile,
    keyed_uid,
    load_profile,
)

__all__ = ["BurnedInAnnotation", "DeidentificationProblem", "deidentify", "keyed_uid"]

# Type 2 attributes of the patient and study modules: present, empty when unknown.
_TYPE2 = (
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "StudyDate",
    "StudyTime",
)
_FILE_META_KEPT = ("MediaStorageSOPClassUID", "TransferSyntaxUID")


def deid_method() -> str:
    """De-identification Method (LO, <= 64 characters): profile, edition and options."""
    return f"lumbar: PS3.15 {load_profile().edition} Annex E Basic, Modif Dates, Clean Desc"


class BurnedInAnnotation(DeidentificationProblem):
    """The image declares burned-in text, which header de-identification cannot remove."""


def deidentify(ds: Any, pseudonym: str, secret: bytes) -> Any:
    """De-identify `ds` in place and return it; PatientID and PatientName become `pseudonym`.

    `secret` keys the UID remapping and the patient's date shift, so one source UID always
    maps to the same new UID and one patient's dates always move by the same days.

    Raises:
        BurnedInAnnotation: BurnedInAnnotation is YES (pixels may show the patient's name).
        DeidentificationProblem: an element cannot be parsed; nothing should be exported.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise BurnedInAnnotation("image has burned-in annotation; not exported as DICOM")
    apply_profile(ds, pseudonym, secret)
    ds.PatientName = pseudonym
    ds.PatientID = pseudonym
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.DeidentificationMethod = deid_method()
    codes = []
    for value, meaning in PROFILE_CODES:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
        codes.append(code)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    old_meta = getattr(ds, "file_meta", None)
    meta = FileMetaDataset()
    for keyword in _FILE_META_KEPT:  # the rest (source AE title ...) is rewritten on save
        if old_meta is not None and keyword in old_meta:
            setattr(meta, keyword, old_meta[keyword].value)
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
    return ds
