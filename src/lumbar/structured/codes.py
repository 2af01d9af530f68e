"""Coded concepts of lumbar's structured outputs, read from `codes.csv` (one table, one place).

Disc levels are SNOMED CT codes of DICOM PS3.16 CID 7151; severities, Normal/Abnormal and disc
degeneration are SNOMED CT. Where no standard concept was found (the paper's finding names,
bulge, herniation types, the per-finding probability) the private coding scheme `99LUMBAR`
is used, as PS3.16 section 8 allows for local codes (prefix "99"). The CSV's `source` column
says where each code was checked.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from lumbar.grading import SPINE_LEVELS

__all__ = [
    "PRIVATE_SCHEME",
    "SCHEME_URIS",
    "Code",
    "concept",
    "declare_private_scheme",
    "finding_code",
    "finding_from_code",
    "finding_names",
    "level_code",
    "level_from_code",
    "probability_code",
    "value_code",
    "value_from_code",
]

PRIVATE_SCHEME = "99LUMBAR"
#: FHIR `system` URIs of the coding schemes used (DICOM designator -> URI).
SCHEME_URIS: dict[str, str] = {
    "SCT": "http://snomed.info/sct",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "UCUM": "http://unitsofmeasure.org",
    PRIVATE_SCHEME: "urn:lumbar:codes",
}


@dataclass(frozen=True)
class Code:
    """One coded concept: DICOM coding scheme designator, code value and meaning."""

    scheme: str
    value: str
    meaning: str

    def key(self) -> tuple[str, str]:
        """(scheme, code): what identifies a concept (meanings may be worded differently)."""
        return (self.scheme, self.value)


@cache
def _table() -> dict[tuple[str, str], Code]:
    text = resources.files("lumbar.structured").joinpath("codes.csv").read_text("utf-8")
    table = {
        (row["kind"], row["key"]): Code(row["scheme"], row["code"], row["meaning"])
        for row in csv.DictReader(text.splitlines())
    }
    missing = [lv for lv in SPINE_LEVELS if ("site", lv) not in table]
    if missing:
        raise RuntimeError(f"codes.csv lacks disc level codes for {', '.join(missing)}")
    return table


def _get(kind: str, key: str) -> Code:
    try:
        return _table()[(kind, key)]
    except KeyError:
        raise ValueError(f"no {kind} code for {key!r} in lumbar/structured/codes.csv") from None


def _reverse(kind: str, code: tuple[str, str]) -> str:
    for (k, key), value in _table().items():
        if k == kind and value.key() == code:
            return key
    raise ValueError(f"unknown {kind} code {code[1]} ({code[0]})")


def level_code(level: str) -> Code:
    """The SNOMED CT code of an intervertebral disc level (`L4-L5` -> 84020006)."""
    return _get("site", level)


def level_from_code(scheme: str, value: str) -> str:
    """The level name of a disc code (inverse of `level_code`)."""
    return _reverse("site", (scheme, value))


def finding_code(finding: str) -> Code:
    """The concept naming a finding (a training target such as `disc_state`)."""
    return _get("finding", finding)


def finding_from_code(scheme: str, value: str) -> str:
    """The finding name of a finding concept (inverse of `finding_code`)."""
    return _reverse("finding", (scheme, value))


def finding_names() -> list[str]:
    """Every finding with codes, in the table's order."""
    return [key for kind, key in _table() if kind == "finding"]


def probability_code(finding: str) -> Code:
    """The concept of the probability the model gives to its value of `finding`."""
    return _get("probability", finding)


def value_code(finding: str, value: str) -> Code:
    """The coded value of a finding: a finding-specific entry (`herniation:normal`) first,
    then the class name's own (`mild`)."""
    table = _table()
    specific = ("value", f"{finding}:{value}")
    return table[specific] if specific in table else _get("value", value)


def value_from_code(finding: str, scheme: str, value: str) -> str:
    """The class name of a coded value of `finding` (inverse of `value_code`)."""
    for (kind, key), code in _table().items():
        if kind == "value" and code.key() == (scheme, value):
            name, _, specific = key.partition(":")
            if not specific:
                return name
            if name == finding:
                return specific
    raise ValueError(f"unknown value code {value} ({scheme}) for finding {finding}")


def declare_private_scheme(ds: Any) -> None:
    """Add the Coding Scheme Identification Sequence entry that declares `99LUMBAR`
    (PS3.3 C.12.1.1.2.1), so readers know the local codes are lumbar's."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "lumbar local codes (lumbar/structured/codes.csv)"
    item.CodingSchemeResponsibleOrganization = "lumbar project"
    existing = list(ds.get("CodingSchemeIdentificationSequence", []))
    kept = [x for x in existing if x.get("CodingSchemeDesignator") != PRIVATE_SCHEME]
    ds.CodingSchemeIdentificationSequence = DicomSequence([*kept, item])


def concept(key: str) -> Code:
    """A further lumbar concept (`model_card_sha256`, `report`)."""
    return _get("concept", key)
