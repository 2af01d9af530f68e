"""PS3.15 Annex E de-identification driven by the standard's own table.

`confidentiality_profile.tsv` holds every row of Table E.1-1 (edition in its header) with its
Basic Profile action and the two option columns lumbar declares:

- Retain Longitudinal Temporal Information with Modified Dates: dates are shifted by a keyed
  per-patient number of days (the same patient always gets the same shift, so intervals
  between studies survive); times of day are kept, as a whole-day shift leaves them valid.
- Clean Descriptors: Study/Series Description and Protocol Name keep only the words series
  classification reads (`classify.clean_descriptor`).

Actions are applied at every level, inside sequences too. Where the table allows a choice
(X/Z, X/D, X/Z/D, X/Z/U*), lumbar removes the attribute; Z/D becomes Z (PatientID and
PatientName then get the pseudonym). D on a sequence empties it (dummy items could carry
codes that identify a person). Private attributes, and public attributes that the table
does not list and `confidentiality_safe.tsv` does not name, are removed.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import hmac
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from lumbar.ingest.classify import clean_descriptor
from lumbar.ingest.read import multi_values

PROFILE_FILE = "confidentiality_profile.tsv"
SAFE_FILE = "confidentiality_safe.tsv"
# How many days back a patient's dates may move (1 to this many; keyed per patient).
MAX_DATE_SHIFT_DAYS = 3650
DUMMY_TEXT = "REMOVED"
# DICOM codes (CID 7050) recorded in De-identification Method Code Sequence.
PROFILE_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113105", "Clean Descriptors Option"),
)
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_DUMMY_BY_VR = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000D"}
_NUMBER_TEXT_VRS = frozenset({"IS", "DS"})
_STRING_VRS = _TEXT_VRS | _NUMBER_TEXT_VRS | frozenset(_DUMMY_BY_VR) | {"UI", "UR"}
_BINARY_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
_COMPOSITE = {"Z/D": "Z", "X/Z": "X", "X/D": "X", "X/Z/D": "X", "X/Z/U*": "X"}


class DeidentificationProblem(Exception):
    """A dataset that cannot be de-identified safely; the message names tags, never values."""


@dataclass(frozen=True)
class ProfileRow:
    """One row of Table E.1-1 as lumbar stores it."""

    tag: str  # "(0008,0050)" or a repeating group "(60xx,3000)", "(50xx,xxxx)"
    keyword: str
    name: str
    vr: str
    basic: str  # D, Z, X, K, C, U or a composite such as X/Z/D
    rtn_long_modif_dates: str  # "C" or ""
    clean_desc: str  # "C" or ""
    inferred: str  # the option cells filled by rule rather than taken from the source

    def action(self, *, modified_dates: bool = True, clean_descriptors: bool = True) -> str:
        """The single action lumbar applies: an option's C first, else the basic action with
        a composite resolved to its strictest choice (see the module docstring)."""
        if modified_dates and self.rtn_long_modif_dates == "C":
            return "C"
        if clean_descriptors and self.clean_desc == "C":
            return "C"
        return _COMPOSITE.get(self.basic, self.basic)


@dataclass(frozen=True)
class Profile:
    """The table keyed for lookups, its edition, and the safe list."""

    edition: str
    rows: tuple[ProfileRow, ...]
    by_tag: dict[int, ProfileRow]
    by_element_in_group: dict[tuple[int, int], ProfileRow]  # (group high byte, element)
    whole_groups: dict[int, ProfileRow]  # group high byte -> row, e.g. 0x50 (curve data)
    safe: frozenset[int]

    def row_for(self, tag: int) -> ProfileRow | None:
        """The table row governing `tag`, repeating groups (50xx, 60xx) included."""
        row = self.by_tag.get(tag)
        if row is not None:
            return row
        group, element = tag >> 16, tag & 0xFFFF
        if group & 0xFF00 in (0x5000, 0x6000) and group % 2 == 0:
            return self.by_element_in_group.get((group >> 8, element)) or self.whole_groups.get(
                group >> 8
            )
        return None


@cache
def load_profile() -> Profile:
    """Read the packaged table and safe list once."""
    folder = resources.files("lumbar.ingest")
    lines = folder.joinpath(PROFILE_FILE).read_text(encoding="utf-8").splitlines()
    edition = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("# edition:")), ""
    )
    reader = csv.DictReader((line for line in lines if not line.startswith("#")), delimiter="\t")
    rows = tuple(ProfileRow(**row) for row in reader)
    by_tag: dict[int, ProfileRow] = {}
    in_group: dict[tuple[int, int], ProfileRow] = {}
    whole: dict[int, ProfileRow] = {}
    for row in rows:
        group_text, element_text = row.tag.strip("()").split(",")
        if "x" in group_text:
            high = int(group_text[:2], 16)
            if element_text == "xxxx":
                whole[high] = row
            else:
                in_group[(high, int(element_text, 16))] = row
        else:
            by_tag[(int(group_text, 16) << 16) | int(element_text, 16)] = row
    safe_lines = folder.joinpath(SAFE_FILE).read_text(encoding="utf-8").splitlines()
    safe_reader = csv.DictReader(
        (line for line in safe_lines if not line.startswith("#")), delimiter="\t"
    )
    safe = frozenset(
        int(r["tag"].strip("()").replace(",", ""), 16) for r in safe_reader if r["tag"]
    )
    return Profile(edition, rows, by_tag, in_group, whole, safe)


def keyed_uid(uid: str, secret: bytes) -> str:
    """A new UID under the UUID root 2.25, keyed by the secret so the mapping is consistent."""
    digest = hmac.new(secret, b"uid:" + uid.strip().encode("ascii", "replace"), hashlib.sha256)
    return "2.25." + str(int.from_bytes(digest.digest()[:16], "big"))


def date_shift_days(pseudonym: str, secret: bytes) -> int:
    """Days (1 to MAX_DATE_SHIFT_DAYS) that every date of this patient moves back."""
    digest = hmac.new(secret, b"date-shift:" + pseudonym.encode("utf-8"), hashlib.sha256)
    return 1 + int.from_bytes(digest.digest()[:8], "big") % MAX_DATE_SHIFT_DAYS


def shift_date(value: str, days: int) -> str:
    """A DA value (YYYYMMDD) moved `days` back; anything else (malformed, partial) -> ""."""
    text = value.strip()
    if len(text) != 8 or not text.isdigit():
        return ""
    try:
        day = datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        return (day - datetime.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        return ""


def shift_datetime(value: str, days: int) -> str:
    """A DT value with its date part moved `days` back, time and offset kept; else ""."""
    text = value.strip()
    date = shift_date(text[:8], days)
    return date + text[8:] if date else ""


@dataclass
class _Context:
    profile: Profile
    secret: bytes
    shift_days: int


def apply_profile(ds: Any, pseudonym: str, secret: bytes) -> list[str]:
    """Apply Table E.1-1 with lumbar's options to `ds` in place, recursing into sequences.

    Returns the tags removed because the table and the safe list do not know them (for
    tests and curiosity; no values).

    Raises:
        DeidentificationProblem: an element cannot be parsed (wrong length for its VR, ...):
            a dataset not fully understood is not exported.
    """
    context = _Context(load_profile(), secret, date_shift_days(pseudonym, secret))
    unknown: list[str] = []
    _apply_level(ds, context, unknown)
    return unknown


def _apply_level(ds: Any, context: _Context, unknown: list[str]) -> None:
    profile = context.profile
    for tag in list(ds.keys()):
        tag = int(tag)
        try:
            elem = ds[tag]
        except Exception:
            raise DeidentificationProblem(f"malformed element {_tag_text(tag)}") from None
        group, element = tag >> 16, tag & 0xFFFF
        if group % 2 == 1 or group == 0x0002 or element == 0x0000:
            del ds[tag]  # private, file meta in the body, group lengths: rewritten on save
            continue
        row = profile.row_for(tag)
        if row is None:
            if tag not in profile.safe:
                unknown.append(_tag_text(tag))
                del ds[tag]
            elif elem.VR == "SQ":
                _recurse(elem, context, unknown)
            continue
        _act(ds, elem, row.action(), context, unknown)


def _act(ds: Any, elem: Any, action: str, context: _Context, unknown: list[str]) -> None:
    vr = elem.VR
    if action == "X":
        del ds[elem.tag]
    elif action == "K":
        if vr == "SQ":
            _recurse(elem, context, unknown)
    elif action == "Z":
        elem.value = [] if vr == "SQ" else ("" if vr in _STRING_VRS else None)
    elif action == "D":
        _dummy(ds, elem, context)
    elif action == "U":
        if vr != "UI":
            del ds[elem.tag]
            return
        values = [str(v) for v in _values(elem.value)]
        mapped = [keyed_uid(v, context.secret) for v in values if v.strip()]
        elem.value = mapped if len(mapped) != 1 else mapped[0]
    elif action == "C":
        _clean(ds, elem, context)
    else:  # an action this engine does not know: the safe choice
        del ds[elem.tag]


def _dummy(ds: Any, elem: Any, context: _Context) -> None:
    """D: a value of the right VR that says nothing (UIDs: keyed, as for U)."""
    vr = elem.VR
    if vr == "SQ":
        elem.value = []
    elif vr == "UI":
        _act(ds, elem, "U", context, [])
    elif vr in _TEXT_VRS:
        elem.value = DUMMY_TEXT[:16] if vr in ("AE", "CS", "SH") else DUMMY_TEXT
    elif vr in _DUMMY_BY_VR:
        elem.value = _DUMMY_BY_VR[vr]
    elif vr in _NUMBER_TEXT_VRS:
        elem.value = "0"
    elif vr in _BINARY_NUMBER_VRS:
        elem.value = 0
    else:  # OB, OW, UN, UR, AT ...: nothing safe to invent
        del ds[elem.tag]


def _clean(ds: Any, elem: Any, context: _Context) -> None:
    """C: shift dates (Modified Dates option) or clean a descriptor (Clean Descriptors)."""
    vr = elem.VR
    if vr == "TM":
        return  # whole-day shifts leave times of day valid
    values = [str(v) for v in _values(elem.value)]
    if vr == "DA":
        cleaned = [shift_date(v, context.shift_days) for v in values]
    elif vr == "DT":
        cleaned = [shift_datetime(v, context.shift_days) for v in values]
    elif vr in _TEXT_VRS:
        cleaned = [clean_descriptor(v) for v in values]
    else:
        del ds[elem.tag]
        return
    kept = [v for v in cleaned if v]
    elem.value = "" if not kept else (kept[0] if len(kept) == 1 else kept)


def _recurse(elem: Any, context: _Context, unknown: list[str]) -> None:
    for item in elem.value:
        _apply_level(item, context, unknown)
    elem.value = [item for item in elem.value if len(item)]


def _values(value: Any) -> list[Any]:
    """`multi_values`, but an empty string is no value at all."""
    return [] if value is None or value == "" else multi_values(value)


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
