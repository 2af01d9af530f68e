"""codes.csv: every disc level and every finding value a model can give has a code, and each
code maps back to exactly one name."""

from __future__ import annotations

import csv
from importlib import resources

import pydicom

from lumbar.data.targets import TARGETS
from lumbar.grading import SPINE_LEVELS
from lumbar.structured import codes


def test_every_spine_level_has_a_snomed_disc_code_that_reads_back() -> None:
    seen = set()
    for level in SPINE_LEVELS:
        code = codes.level_code(level)
        assert code.scheme == "SCT" and code.meaning.endswith("disc")
        assert codes.level_from_code(code.scheme, code.value) == level
        seen.add(code.value)
    assert len(seen) == len(SPINE_LEVELS)
    assert codes.level_code("L4-L5").value == "84020006"  # DICOM CID 7151 "L4/L5 disc"


def test_every_target_class_has_finding_probability_and_value_codes() -> None:
    for name, target in TARGETS.items():
        finding = codes.finding_code(name)
        assert codes.finding_from_code(finding.scheme, finding.value) == name
        assert codes.probability_code(name).scheme == codes.PRIVATE_SCHEME
        for value in target.class_names:
            code = codes.value_code(name, value)
            assert codes.value_from_code(name, code.scheme, code.value) == value
    # Table 3's herniation type "normal" is not SNOMED's Normal
    assert codes.value_code("herniation", "normal").scheme == codes.PRIVATE_SCHEME
    assert codes.value_code("disc_state", "normal").value == "17621005"


def test_codes_are_unique_per_kind() -> None:
    text = resources.files("lumbar.structured").joinpath("codes.csv").read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    for kind in {row["kind"] for row in rows}:
        keys = [(r["scheme"], r["code"]) for r in rows if r["kind"] == kind]
        assert len(keys) == len(set(keys)), kind
    assert all(row["source"] for row in rows)


def test_private_scheme_is_declared() -> None:
    ds = pydicom.Dataset()
    codes.declare_private_scheme(ds)
    codes.declare_private_scheme(ds)  # idempotent
    (item,) = ds.CodingSchemeIdentificationSequence
    assert item.CodingSchemeDesignator == "99LUMBAR"
