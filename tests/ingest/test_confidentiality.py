"""The Annex E engine walked over every row of the packaged Table E.1-1, at the top level and
inside a kept sequence; the table's and the safe list's own consistency; and an independent
check: the same files de-identified by Orthanc's /anonymize (its Basic Profile), where any
attribute Orthanc removes or empties and lumbar keeps fails, unless an option lumbar declares
explains it (tests/helpers/orthanc.py skips this where Orthanc is not installed)."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.dicom_leaks import identified_mr, leaky_mr
from helpers.orthanc import post_json, running_orthanc, upload

from lumbar.ingest.classify import clean_descriptor
from lumbar.ingest.confidentiality import (
    ProfileRow,
    apply_profile,
    date_shift_days,
    keyed_uid,
    load_profile,
    shift_date,
    shift_datetime,
)

SECRET = b"table-secret"
PSEUDONYM = "P0123456789ab"
BASIC_ACTIONS = {"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}


def _tag(row: ProfileRow) -> int:
    """A concrete tag for a row; repeating groups are tried in their third group (xx=04)."""
    group, element = row.tag.strip("()").split(",")
    group = group.replace("xx", "04")
    element = "0010" if element == "xxxx" else element
    return (int(group, 16) << 16) | int(element, 16)


def _sample(vr: str) -> Any:
    """An identifying-looking value of this VR."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    if vr == "SQ":
        item = Dataset()
        item.CodeValue = "LEAK-CODE"
        return Sequence([item])
    return {
        "UI": "1.2.826.0.1.3680043.2.1125.99",
        "DA": "20200505",
        "TM": "101010",
        "DT": "20200505101010.5+0300",
        "PN": "DOE^JANE",
        "AS": "045Y",
        "IS": "12",
        "DS": "1.5",
        "US": 7,
        "SS": 7,
        "UL": 7,
        "SL": 7,
        "FL": 1.5,
        "FD": 1.5,
        "AT": 0x00100010,
        "UR": "http://example.org/DOE",
    }.get(vr, b"\x01\x02" if vr.startswith("O") or vr == "UN" else "LEAK DOE 1970")


def _expected(row: ProfileRow, vr: str, original: Any) -> tuple[str, Any]:
    """('absent' | 'value', value) that the row's resolved action must give."""
    action = row.action()
    if row.tag.startswith("(0002,"):  # file meta: never in the body; deidentify rebuilds it
        return "absent", None
    if action == "X":
        return "absent", None
    if action == "Z":
        return "value", [] if vr == "SQ" else ("" if isinstance(original, str) else None)
    if action == "U" or (action == "D" and vr == "UI"):
        return ("value", keyed_uid(original, SECRET)) if vr == "UI" else ("absent", None)
    if action == "D":
        if vr == "SQ":
            return "value", []
        dummy = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000D"}
        if vr in dummy:
            return "value", dummy[vr]
        if vr in ("IS", "DS"):
            return "value", "0"
        if vr in ("US", "SS", "UL", "SL", "FL", "FD"):
            return "value", 0
        if isinstance(original, str) and vr not in ("UR",):
            return "value", "REMOVED"
        return "absent", None
    if action == "C":
        days = date_shift_days(PSEUDONYM, SECRET)
        if vr == "DA":
            return "value", shift_date(original, days)
        if vr == "DT":
            return "value", shift_datetime(original, days)
        if vr == "TM":
            return "value", original
        return "value", clean_descriptor(original)
    raise AssertionError(f"unexpected action {action} for {row.tag}")


def _walk(nested: bool) -> list[str]:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    wrong = []
    for row in load_profile().rows:
        vr = (row.vr or "LO").split(" or ")[0]
        tag = _tag(row)
        original = _sample(vr)
        target = Dataset()
        target.add_new(tag, vr, original)
        ds = Dataset()
        if nested:  # the same row inside a safe-listed sequence's item
            ds.SharedFunctionalGroupsSequence = Sequence([target])
        else:
            ds = target
        apply_profile(ds, PSEUDONYM, SECRET)
        if nested:
            items = ds.SharedFunctionalGroupsSequence
            target = items[0] if len(items) else Dataset()
        kind, value = _expected(row, vr, original)
        if kind == "absent":
            if tag in target:
                wrong.append(f"{row.tag} {row.keyword}: kept, {row.action()} expected")
            continue
        if tag not in target:
            wrong.append(f"{row.tag} {row.keyword}: removed, {row.action()} expected")
            continue
        got = target[tag].value
        if vr == "SQ":
            got = list(got)
        if got != value:
            wrong.append(f"{row.tag} {row.keyword}: {got!r}, expected {value!r}")
    return wrong


def test_every_row_of_the_table_is_applied() -> None:
    assert _walk(nested=False) == []


def test_every_row_is_applied_inside_sequences() -> None:
    assert _walk(nested=True) == []


def test_the_table_is_complete_and_consistent() -> None:
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    profile = load_profile()
    assert profile.edition == "2026c"
    rows = profile.rows
    assert len(rows) == 655 and len({r.tag for r in rows}) == 655
    assert {r.basic for r in rows} <= BASIC_ACTIONS
    for row in rows:
        if "x" not in row.tag and row.keyword:
            assert keyword_for_tag(_tag(row)) == row.keyword
            assert dictionary_VR(_tag(row)) == row.vr
        # option cells come from a rule, never silently: each is flagged
        for column in ("rtn_long_modif_dates", "clean_desc"):
            assert (getattr(row, column) == "C") == (column in row.inferred.split(","))
    named = {r.keyword: r for r in rows}
    assert named["PatientName"].basic == "Z" and named["SOPInstanceUID"].basic == "U"
    assert named["SeriesDescription"].action() == "C"
    assert named["StudyDate"].action() == "C" and named["PatientBirthDate"].action() == "Z"
    assert named["StudyDate"].action(modified_dates=False) == "Z"
    assert named["InstitutionName"].action() == "X"  # X/Z/D: the strictest choice


def test_the_safe_list_names_no_identifying_attribute() -> None:
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    profile = load_profile()
    assert not profile.safe & set(profile.by_tag)  # the table always wins
    for tag in profile.safe:
        assert keyword_for_tag(tag), hex(tag)
        assert dictionary_VR(tag) not in ("PN", "DA", "DT", "TM", "LT", "ST", "UT", "UC")


def test_private_and_unknown_public_tags_are_removed() -> None:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.add_new(0x00291010, "LO", "vendor DOE")
    ds.add_new(0x00089998, "LO", "unknown DOE")
    ds.add_new(0x00180015, "CS", "LSPINE")  # BodyPartExamined: safe-listed
    ds.add_new(0x60023000, "OW", b"\x00\x01")  # overlay data in the second overlay group
    removed = apply_profile(ds, PSEUDONYM, SECRET)
    assert list(ds.keys()) == [0x00180015]
    assert "(0008,9998)" in removed


@pytest.mark.parametrize(
    ("value", "days", "shifted"),
    [("20200305", 5, "20200229"), ("2020", 5, ""), ("20201340", 5, ""), ("", 1, "")],
)
def test_date_shift(value, days, shifted) -> None:
    assert shift_date(value, days) == shifted
    if shifted:
        assert shift_datetime(value + "101010.5+0300", days) == shifted + "101010.5+0300"


def test_date_shift_is_keyed_per_patient() -> None:
    a = date_shift_days("P1", SECRET)
    assert a == date_shift_days("P1", SECRET)
    assert len({date_shift_days(f"P{i}", SECRET) for i in range(50)}) > 40
    assert date_shift_days("P1", b"other") != a or date_shift_days("P2", b"other") != a


# ------------------------------------------------------------------ cross-check with Orthanc

# Attributes Orthanc (PS3.15 2021b, Basic Profile only) removes or empties and lumbar keeps
# on purpose, each for an option lumbar declares; `_justified` checks the kept value really
# is the option's, so an exception cannot hide a leak.
SHIFTED_BY_MODIFIED_DATES = "date moved back by the patient's keyed shift (Modified Dates)"
TIME_KEPT_BY_MODIFIED_DATES = "time of day kept: whole-day shifts (Modified Dates)"
CLEANED_DESCRIPTOR = "only classification words kept (Clean Descriptors)"


# The justified exceptions, listed: attribute -> the option that keeps it.
JUSTIFIED = {
    **dict.fromkeys(
        ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime"),
        SHIFTED_BY_MODIFIED_DATES,
    ),
    **dict.fromkeys(
        ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime"), TIME_KEPT_BY_MODIFIED_DATES
    ),
    **dict.fromkeys(("StudyDescription", "SeriesDescription", "ProtocolName"), CLEANED_DESCRIPTOR),
}


def _justified(keyword: str, vr: str, original: Any, kept: Any) -> str | None:
    """The listed option that explains why lumbar keeps an attribute Orthanc drops, when the
    kept value is what that option makes of the original; else None."""
    reason = JUSTIFIED.get(keyword)
    if reason == SHIFTED_BY_MODIFIED_DATES and vr in ("DA", "DT"):
        ok = bool(kept) and str(kept)[:8] != str(original)[:8] and str(kept)[:8].isdigit()
    elif reason == TIME_KEPT_BY_MODIFIED_DATES:
        ok = vr == "TM" and kept == original
    elif reason == CLEANED_DESCRIPTOR:
        ok = kept == clean_descriptor(str(original))
    else:
        ok = False
    return reason if ok else None


def _flatten(ds: Any, prefix: str = "") -> dict[str, tuple[str, str, Any]]:
    """path -> (keyword, VR, value) of every element, sequences walked ("(0008,1140)[0]...")."""
    out = {}
    for elem in ds:
        path = f"{prefix}({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.VR == "SQ":
            out[path] = (elem.keyword, "SQ", len(elem.value))
            for number, item in enumerate(elem.value):
                out.update(_flatten(item, f"{path}[{number}]"))
        else:
            out[path] = (elem.keyword, elem.VR, elem.value)
    return out


def _empty(value: Any) -> bool:
    return (value in (None, "", b"", 0) and not isinstance(value, bool)) or value == []


def _compare(
    original: Any, orthanc: Any, lumbar: Any
) -> tuple[list[str], set[str], set[str], Counter]:
    """(failures, paths compared, paths Orthanc drops, exceptions used) for one instance."""
    before, by_orthanc, by_lumbar = _flatten(original), _flatten(orthanc), _flatten(lumbar)
    failures, used, dropped_paths = [], Counter(), set()
    for path, (keyword, vr, value) in before.items():
        dropped = path not in by_orthanc or _empty(by_orthanc[path][2])
        if not dropped or _empty(value) or path.startswith("(0002,"):
            continue
        dropped_paths.add(path)
        if path not in by_lumbar or _empty(by_lumbar[path][2]):
            continue
        reason = _justified(keyword, vr, value, by_lumbar[path][2])
        if reason is None:
            failures.append(f"{path} {keyword}: Orthanc drops it, lumbar keeps it")
        else:
            used[f"{keyword}: {reason}"] += 1
    return failures, set(before), dropped_paths, used


@pytest.fixture(scope="module")
def orthanc_rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as base:
        yield base


def test_lumbar_keeps_nothing_that_orthanc_removes(orthanc_rest, phantom_cohort) -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    from lumbar.ingest.deid import deidentify
    from lumbar.ingest.read import iter_files
    from lumbar.pseudonym import pseudonymize

    sources: list[bytes] = []
    patient = sorted(p for p in phantom_cohort.iterdir() if p.is_dir())[0]
    sources += [p.read_bytes() for p in iter_files(patient)]
    for name in ("MR_small.dcm", "MR2_J2KI.dcm", "emri_small_RLE.dcm"):
        if get_testdata_file(name):
            sources.append(Path(get_testdata_file(name)).read_bytes())
    for ds in (identified_mr(), leaky_mr()):
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        sources.append(buffer.getvalue())
    failures, compared, dropped, used = [], set(), set(), Counter()
    for data in sources:
        original = pydicom.dcmread(io.BytesIO(data))
        instance = upload(orthanc_rest, data)
        anonymized = post_json(orthanc_rest, f"/instances/{instance}/anonymize", {})
        by_orthanc = pydicom.dcmread(io.BytesIO(anonymized))
        pseudonym = pseudonymize(str(original.get("PatientID", "")), SECRET)
        by_lumbar = deidentify(pydicom.dcmread(io.BytesIO(data)), pseudonym, SECRET)
        found, paths, gone, exceptions = _compare(original, by_orthanc, by_lumbar)
        failures += found
        compared |= {p.split("[")[0] for p in paths}
        dropped |= {p.split("[")[0] for p in gone}
        used.update(exceptions)
    print(
        f"\n{len(sources)} instances, {len(compared)} distinct attributes compared, "
        f"{len(dropped)} of them removed or emptied by Orthanc"
    )
    for line, count in sorted(used.items()):
        print(f"  justified x{count}: {line}")
    assert failures == []
    assert len(sources) > 50 and len(compared) > 80
