"""The prediction as a FHIR R4 DiagnosticReport (fhir.resources' R4B models: R4's structure).

One Observation per disc and finding, contained in the report and listed in its `result`:
`code` = the finding, `bodySite` = the disc level (SNOMED CT), `valueCodeableConcept` = the
value the model chose, and a `component` holding its probability (`valueQuantity`, UCUM "1").
The report names its imaging study by DICOM Study Instance UID and its subject by the patient
identifier of the chosen identity mode; `status` is `preliminary` (a model's suggestion).
The JSON is validated by building it with fhir.resources before it is written.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from lumbar.structured import codes
from lumbar.structured.model import FindingResult, StudyPrediction

__all__ = ["build_fhir", "fhir_json", "read_fhir"]

_UCUM = codes.SCHEME_URIS["UCUM"]


def _coding(code: codes.Code) -> dict[str, str]:
    return {"system": codes.SCHEME_URIS[code.scheme], "code": code.value, "display": code.meaning}


def _observation_id(level: str, finding: str) -> str:
    return f"disc-{level}-{finding}".replace("_", "-").lower()


def build_fhir(prediction: StudyPrediction, issued: dt.datetime | None = None) -> Any:
    """The DiagnosticReport resource (a validated fhir.resources model).

    Raises:
        RuntimeError: the resource does not validate (a bug in lumbar, not in the input).
    """
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from pydantic import ValidationError

    identity = prediction.identity
    algorithm = prediction.algorithm
    device = (
        f"{algorithm.name} {algorithm.version} (model card sha256 {algorithm.model_card_sha256})"
    )
    subject = {"identifier": {"value": identity.patient_id}, "display": identity.patient_id}
    contained: list[dict[str, Any]] = []
    results = []
    for disc in prediction.discs:
        for finding in disc.findings:
            ident = _observation_id(disc.level, finding.name)
            contained.append(
                {
                    "resourceType": "Observation",
                    "id": ident,
                    "status": "preliminary",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": "imaging",
                                }
                            ]
                        }
                    ],
                    "code": {"coding": [_coding(codes.finding_code(finding.name))]},
                    "subject": subject,
                    "bodySite": {"coding": [_coding(codes.level_code(disc.level))]},
                    "valueCodeableConcept": {
                        "coding": [_coding(codes.value_code(finding.name, finding.value))],
                        "text": finding.value,
                    },
                    "component": [
                        {
                            "code": {"coding": [_coding(codes.probability_code(finding.name))]},
                            "valueQuantity": {
                                "value": finding.probability,
                                "unit": "probability",
                                "system": _UCUM,
                                "code": "1",
                            },
                        }
                    ],
                    "device": {"display": device},
                }
            )
            results.append({"reference": f"#{ident}"})
    when = (issued or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    report = {
        "resourceType": "DiagnosticReport",
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "RAD",
                        "display": "Radiology",
                    }
                ]
            }
        ],
        "code": {"coding": [_coding(codes.concept("report"))], "text": "Lumbar disc findings"},
        "subject": subject,
        "issued": when,
        "imagingStudy": [
            {
                "identifier": {
                    "system": "urn:dicom:uid",
                    "value": f"urn:oid:{identity.study_instance_uid}",
                }
            }
        ],
        "contained": contained,
        "result": results,
        "conclusion": "Model suggestion, not a diagnosis: " + device,
    }
    try:
        return DiagnosticReport.model_validate(report)
    except ValidationError as err:
        raise RuntimeError(f"the FHIR DiagnosticReport does not validate: {err}") from None


def fhir_json(prediction: StudyPrediction, issued: dt.datetime | None = None) -> str:
    """The validated DiagnosticReport as JSON text."""
    resource = build_fhir(prediction, issued)
    return json.dumps(json.loads(resource.model_dump_json(exclude_none=True)), indent=2) + "\n"


def read_fhir(text: str) -> dict[str, tuple[FindingResult, ...]]:
    """{level: findings} of a DiagnosticReport written by `fhir_json` (validated on reading)."""
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    report = DiagnosticReport.model_validate_json(text)
    found: dict[str, list[FindingResult]] = {}
    for resource in report.contained or []:
        site = resource.bodySite.coding[0]
        level = codes.level_from_code(_designator(site.system), site.code)
        finding = codes.finding_from_code(
            _designator(resource.code.coding[0].system), resource.code.coding[0].code
        )
        value = resource.valueCodeableConcept.coding[0]
        found.setdefault(level, []).append(
            FindingResult(
                finding,
                codes.value_from_code(finding, _designator(value.system), value.code),
                float(resource.component[0].valueQuantity.value),
            )
        )
    return {level: tuple(items) for level, items in found.items()}


def _designator(system: str) -> str:
    for designator, uri in codes.SCHEME_URIS.items():
        if uri == system:
            return designator
    raise ValueError(f"unknown coding system {system}")
