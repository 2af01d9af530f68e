"""Whose identifiers the structured outputs carry: two explicit modes.

- `hospital`: objects returned to the hospital's own PACS carry the original study's
  identifiers (PatientID, PatientName, StudyInstanceUID, the source instances' UIDs), so a
  viewer files them beside the images they describe. They stay inside the hospital.
- `research` (default): everything is pseudonymised exactly as `lumbar ingest --export-dicom`
  does it (`lumbar.ingest.deid.deidentify`: keyed pseudonym, keyed UIDs, no names, dates
  shifted by a keyed per-patient offset), so a research SR refers to the instances of the
  de-identified export made with the same secret.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from lumbar.errors import UserError
from lumbar.ingest.deid import BurnedInAnnotation, DeidentificationProblem, deidentify
from lumbar.pseudonym import pseudonymize
from lumbar.structured.model import SourceImage, StudyIdentity

__all__ = [
    "IDENTIFYING_KEYWORDS",
    "Identity",
    "apply_identity",
    "check_same_study",
    "identifiers_of",
    "source_image",
    "study_identity",
]


class Identity(StrEnum):
    """The identity mode of the structured outputs."""

    HOSPITAL = "hospital"
    RESEARCH = "research"


#: Attributes of a source image whose values identify the patient or the study.
IDENTIFYING_KEYWORDS: tuple[str, ...] = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "InstitutionName",
    "ReferringPhysicianName",
)


def apply_identity(headers: Iterable[Any], mode: Identity, secret: bytes) -> list[Any]:
    """Copies of the source headers as the outputs will name them (originals untouched).

    Raises:
        UserError: research mode and a source declares burned-in annotation (its pixels could
            show a name, and the overlay series would copy them) or cannot be de-identified.
    """
    out = []
    for ds in headers:
        clone = copy.deepcopy(ds)
        if Identity(mode) is Identity.RESEARCH:
            try:
                deidentify(clone, pseudonymize(str(ds.get("PatientID", "")), secret), secret)
            except BurnedInAnnotation:
                raise UserError(
                    "a source image declares burned-in annotation; research outputs would copy "
                    "its pixels, so none were made"
                ) from None
            except DeidentificationProblem as err:
                raise UserError(f"a source image cannot be pseudonymised: {err}") from None
        out.append(clone)
    return out


def study_identity(ds: Any) -> StudyIdentity:
    """The patient and study attributes of a (possibly pseudonymised) source header."""

    def text(keyword: str) -> str:
        value = ds.get(keyword, "")
        return "" if value is None else str(value)

    return StudyIdentity(
        patient_id=text("PatientID"),
        patient_name=text("PatientName"),
        study_instance_uid=text("StudyInstanceUID"),
        patient_birth_date=text("PatientBirthDate"),
        patient_sex=text("PatientSex"),
        study_id=text("StudyID"),
        study_date=text("StudyDate"),
        study_time=text("StudyTime"),
        accession_number=text("AccessionNumber"),
        referring_physician_name=text("ReferringPhysicianName"),
    )


def source_image(ds: Any) -> SourceImage:
    """A `SourceImage` of a (possibly pseudonymised) header, with its geometry if present."""
    position = ds.get("ImagePositionPatient")
    orientation = ds.get("ImageOrientationPatient")
    spacing = ds.get("PixelSpacing")
    return SourceImage(
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        position=(float(position[0]), float(position[1]), float(position[2])) if position else None,
        orientation=tuple(float(v) for v in orientation) if orientation else None,
        spacing=(float(spacing[0]), float(spacing[1])) if spacing else None,
    )


def identifiers_of(ds: Any) -> set[str]:
    """The identifying values of a source header (empty ones left out)."""
    values: set[str] = set()
    for keyword in IDENTIFYING_KEYWORDS:
        value = ds.get(keyword)
        text = "" if value is None else str(value).strip()
        if text:
            values.add(text)
    return values


def check_same_study(obj: Any, source: StudyIdentity) -> None:
    """Refuse an output object that does not belong to its source study (as named for the
    chosen identity): a PACS would otherwise file it with another patient.

    Raises:
        UserError: patient ID, patient name or Study Instance UID differ.
    """
    for keyword, expected in (
        ("StudyInstanceUID", source.study_instance_uid),
        ("PatientID", source.patient_id),
        ("PatientName", source.patient_name),
    ):
        if str(obj.get(keyword, "") or "") != expected:
            raise UserError(
                f"an output object's {keyword} differs from its source study's; nothing was sent"
            )
