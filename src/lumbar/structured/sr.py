"""The prediction as a DICOM Comprehensive 3D SR following TID 1500 (Measurement Report),
written and read with highdicom.

One measurement group (TID 1410) per disc: tracking identifier ("disc L4-L5" and a UID), finding
site = the disc level's SNOMED CT code, the disc's point on its source image (SCOORD POINT, DICOM
image coordinates: the centre of column c is c + 0.5), the algorithm's identification (name,
version, model card SHA-256 as an algorithm parameter), one qualitative evaluation per finding,
and per finding the probability of the chosen value (unit UCUM "{probability}") whose source of
measurement is the axial image the model graded. `read_sr` turns such an SR back into discs.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes as dcm_codes

from lumbar import __version__
from lumbar.structured import codes
from lumbar.structured.model import (
    POINT_DECIMALS,
    AlgorithmInfo,
    DiscPrediction,
    FindingResult,
    StudyPrediction,
)

__all__ = [
    "PROBABILITY_UNIT",
    "SR_SERIES_NUMBER",
    "ReadDisc",
    "build_sr",
    "read_sr",
    "uid_from",
]

PROBABILITY_UNIT = codes.Code("UCUM", "{probability}", "probability")
SR_SERIES_NUMBER = 9901
MANUFACTURER = "lumbar"
_CARD_PREFIX = "model card sha256 "


def uid_from(*parts: str) -> str:
    """A UID under the UUID root 2.25 derived from `parts`: the same inputs give the same UID
    (a study's outputs keep their UIDs when written again, so a PACS replaces, not duplicates)."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _coded(code: codes.Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def build_sr(
    prediction: StudyPrediction, evidence: Sequence[Any], *, instance_number: int = 1
) -> hd.sr.Comprehensive3DSR:
    """The SR of `prediction`; `evidence` are the source headers in the prediction's identity
    (the SR takes its patient and study attributes from them).

    The SR's series and instance UIDs derive from the study, algorithm and findings, so
    writing the same prediction twice gives the same object.
    """
    algorithm = prediction.algorithm
    groups = [
        _group(disc, algorithm, prediction.identity.study_instance_uid) for disc in prediction.discs
    ]
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=uid_from("device", algorithm.name, algorithm.model_card_sha256),
        name=algorithm.name[:64],
        manufacturer_name=MANUFACTURER,
        model_name=algorithm.version[:64],
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=dcm_codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=_coded(codes.concept("report")),
        imaging_measurements=groups,
    )
    key = _content_key(prediction)
    study = prediction.identity.study_instance_uid
    with warnings.catch_warnings():
        # pseudonyms are single-component names on purpose
        warnings.filterwarnings("ignore", message=".*intended person name", category=UserWarning)
        sr = hd.sr.Comprehensive3DSR(
            evidence=list(evidence),
            content=report,
            series_instance_uid=uid_from("sr-series", study, algorithm.model_card_sha256),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=uid_from("sr", study, key),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=algorithm.name[:64],
            software_versions=f"lumbar {__version__}",
            series_description="lumbar disc findings (SR)",
            is_complete=True,
            is_final=False,  # a model's suggestion until a radiologist verifies it
            is_verified=False,
        )
    codes.declare_private_scheme(sr)
    return sr


def _group(
    disc: DiscPrediction, algorithm: AlgorithmInfo, study: str
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    x, y = disc.point
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POINT,
        graphic_data=np.array([[x + 0.5, y + 0.5]]),
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=disc.image.sop_class_uid,
            referenced_sop_instance_uid=disc.image.sop_instance_uid,
        ),
    )
    site = [hd.sr.FindingSite(anatomic_location=_coded(codes.level_code(disc.level)))]
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=algorithm.name[:64],
        version=algorithm.version[:64],
        parameters=[_CARD_PREFIX + algorithm.model_card_sha256],
    )
    evaluations = [
        hd.sr.QualitativeEvaluation(
            name=_coded(codes.finding_code(f.name)), value=_coded(codes.value_code(f.name, f.value))
        )
        for f in disc.findings
    ]
    source = (
        [
            hd.sr.SourceImageForMeasurement(
                referenced_sop_class_uid=disc.axial.sop_class_uid,
                referenced_sop_instance_uid=disc.axial.sop_instance_uid,
            )
        ]
        if disc.axial is not None
        else None
    )
    measurements = [
        hd.sr.Measurement(
            name=_coded(codes.probability_code(f.name)),
            value=f.probability,
            unit=_coded(PROBABILITY_UNIT),
            referenced_images=source,
        )
        for f in disc.findings
    ]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=uid_from("tracking", study, disc.level), identifier=f"disc {disc.level}"
        ),
        referenced_region=region,
        algorithm_id=algorithm_id,
        finding_sites=site,
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )


def _content_key(prediction: StudyPrediction) -> str:
    parts = [prediction.algorithm.model_card_sha256]
    for disc in prediction.discs:
        parts.append(f"{disc.level}:{disc.point}:{disc.image.sop_instance_uid}")
        parts.extend(f"{f.name}={f.value}@{f.probability}" for f in disc.findings)
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ReadDisc:
    """One disc as read back from an SR."""

    level: str
    image_uid: str  # SOP Instance UID of the image the point is on
    point: tuple[float, float]  # pixel coordinates (centre of pixel 0 at 0.0)
    axial_uid: str | None
    findings: tuple[FindingResult, ...]
    algorithm_name: str
    algorithm_version: str
    model_card_sha256: str


def read_sr(source: Path | Any) -> list[ReadDisc]:
    """The discs of a lumbar TID 1500 SR (a file or a pydicom Dataset), in document order.

    Raises:
        ValueError: not an SR of this form (a group without a disc level, an unknown code).
    """
    import pydicom

    ds = pydicom.dcmread(source) if isinstance(source, str | Path) else source
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds, copy=True)
    discs = []
    for group in sr.content.get_planar_roi_measurement_groups():
        if not group.finding_sites:
            raise ValueError("a measurement group has no finding site (disc level)")
        location = group.finding_sites[0].value
        level = codes.level_from_code(location.scheme_designator, location.value)
        roi = group.roi
        if roi is None:
            raise ValueError(f"{level}: the group has no image region")
        (x, y) = roi.value[0]
        image_uid = roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        evaluations = {}
        for item in group.get_qualitative_evaluations():
            name = codes.finding_from_code(item.name.scheme_designator, item.name.value)
            evaluations[name] = codes.value_from_code(
                name, item.value.scheme_designator, item.value.value
            )
        probabilities: dict[str, float] = {}
        axial_uid = None
        for item in group.get_measurements():
            name = _probability_finding(item.name.scheme_designator, item.name.value)
            probabilities[name] = float(item.value)
            if item.referenced_images:
                axial_uid = item.referenced_images[0].referenced_sop_instance_uid
        algorithm = _algorithm(group)
        discs.append(
            ReadDisc(
                level=level,
                image_uid=str(image_uid),
                point=(
                    round(float(x) - 0.5, POINT_DECIMALS),
                    round(float(y) - 0.5, POINT_DECIMALS),
                ),
                axial_uid=None if axial_uid is None else str(axial_uid),
                findings=tuple(
                    FindingResult(name, value, probabilities[name])
                    for name, value in evaluations.items()
                ),
                algorithm_name=algorithm[0],
                algorithm_version=algorithm[1],
                model_card_sha256=algorithm[2],
            )
        )
    return discs


def _probability_finding(scheme: str, value: str) -> str:
    for finding in codes.finding_names():
        if codes.probability_code(finding).key() == (scheme, value):
            return finding
    raise ValueError(f"unknown probability concept {value} ({scheme})")


def _algorithm(group: Any) -> tuple[str, str, str]:
    """(name, version, model card hash) from a group's TID 4019 Algorithm Identification."""
    name = version = card = ""
    for item in group[0].ContentSequence:
        concept = item.ConceptNameCodeSequence[0].CodeValue
        if concept == dcm_codes.DCM.AlgorithmName.value:
            name = str(item.TextValue)
        elif concept == dcm_codes.DCM.AlgorithmVersion.value:
            version = str(item.TextValue)
        elif concept == dcm_codes.DCM.AlgorithmParameters.value and str(item.TextValue).startswith(
            _CARD_PREFIX
        ):
            card = str(item.TextValue)[len(_CARD_PREFIX) :]
    return name, version, card
