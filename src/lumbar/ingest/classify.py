"""Classify series into `sagittal_t2`, `axial_t2`, `myelo` or `other`, and say why.

Evidence, in order: the user's YAML rules (first match wins), then built-in rules on modality,
localizer markers, SeriesDescription, the imaging plane computed from ImageOrientationPatient,
and T1/T2 weighting from EchoTime/RepetitionTime. Every decision carries a one-line reason
(`lumbar ingest --explain`).

SeriesDescription and ProtocolName are free text that may hold a patient's name or ID, so
ingest keeps only their *cleaned descriptor* (`clean_descriptor`): the words the rules below
look for (`DESCRIPTOR_PATTERNS`), upper-cased, in order. Classification of the cleaned text is
the same as of the full text; user rules on `series_description`/`protocol_name` see the
cleaned text too (e.g. "T2 TSE SAG" for "t2_tse_sag Smith").

A rules file looks like::

    rules:                       # tried in order, before the built-in rules
      - name: site myelography
        class: myelo
        series_description: "(?i)myelo|mrm"
      - class: other
        series_description: "(?i)dixon"
    thresholds:                  # optional; built-in defaults shown
      t2_min_echo_time: 60       # ms
      t2_min_repetition_time: 1500
      t1_max_echo_time: 30
      t1_max_repetition_time: 1000
      myelo_min_echo_time: 400
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from lumbar.errors import UserError


class SeriesClass(StrEnum):
    """The views the paper uses, plus `other` for everything ingest ignores."""

    SAGITTAL_T2 = "sagittal_t2"
    AXIAL_T2 = "axial_t2"
    MYELO = "myelo"
    OTHER = "other"


class Plane(StrEnum):
    """Anatomical plane of an image, from the normal of ImageOrientationPatient."""

    SAGITTAL = "sagittal"
    CORONAL = "coronal"
    AXIAL = "axial"
    MIXED = "mixed"
    UNKNOWN = "unknown"


@dataclass
class SeriesSummary:
    """What classification looks at: one series' aggregated header facts (no patient data)."""

    series_uid: str
    series_number: int | None
    description: str
    protocol_name: str
    modality: str
    image_type: str
    n_images: int
    plane: Plane
    echo_time: float | None
    repetition_time: float | None


@dataclass
class Thresholds:
    """Timing limits (ms) that decide T1/T2 weighting and heavy-T2 myelography."""

    t2_min_echo_time: float = 60.0
    t2_min_repetition_time: float = 1500.0
    t1_max_echo_time: float = 30.0
    t1_max_repetition_time: float = 1000.0
    myelo_min_echo_time: float = 400.0


_RULE_FIELDS = {
    "series_description": "description",
    "protocol_name": "protocol_name",
    "image_type": "image_type",
    "modality": "modality",
}


@dataclass
class Rule:
    """One user rule: all given conditions must hold; then the series gets `series_class`."""

    series_class: SeriesClass
    name: str = ""
    patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)
    plane: Plane | None = None
    weighting: str | None = None
    min_images: int | None = None
    max_images: int | None = None

    def matches(self, series: SeriesSummary, weighting: str) -> bool:
        """True when every condition of the rule holds for `series`."""
        for key, pattern in self.patterns.items():
            if not pattern.search(getattr(series, _RULE_FIELDS[key]) or ""):
                return False
        if self.plane is not None and series.plane is not self.plane:
            return False
        if self.weighting is not None and weighting != self.weighting:
            return False
        if self.min_images is not None and series.n_images < self.min_images:
            return False
        return self.max_images is None or series.n_images <= self.max_images


@dataclass
class Rules:
    """User rules (tried first) and the timing thresholds of the built-in rules."""

    rules: list[Rule] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class Classification:
    """A series' class and the one-line reason for it."""

    series_class: SeriesClass
    reason: str


# Words are delimited by anything but a letter, so "t2_tse_sag" and "T2-SAG" both match.
_LOCALIZER = re.compile(
    r"(?i)(?<![a-z])(survey|scout|locali[sz]er|loc|3[- ]?plane|tri[- ]?pilot|pilot)(?![a-z])"
)
_MYELO = re.compile(r"(?i)myel(o(graphy|gram)?)?|(?<![a-z])mrm(?![a-z])")
_T2 = re.compile(r"(?i)t2(?![*\d])")
_T1 = re.compile(r"(?i)t1(?!\d)")
_FLUID_SUPPRESSED = re.compile(r"(?i)(?<![a-z])(stir|flair|tirm|dwi|diffusion|adc|dixon)(?![a-z])")
_SAG = re.compile(r"(?i)(?<![a-z])sag(ittal)?(?![a-z])")
_AX = re.compile(r"(?i)(?<![a-z])(ax|axial|tra|trans|transverse)(?![a-z])")
_COR = re.compile(r"(?i)(?<![a-z])cor(onal)?(?![a-z])")
# Sequence names: not used by the built-in rules, kept so user rules can tell series apart.
_SEQUENCE = re.compile(
    r"(?i)(?<![a-z0-9])(tse|fse|frfse|ssfse|se|gre|ffe|space|cube|vista|haste|ciss|fiesta|"
    r"trufi|fs|fat[- ]?sat|spair|[23]d)(?![a-z0-9])"
)
# Everything a cleaned descriptor keeps: the one list of words the rules look for.
DESCRIPTOR_PATTERNS = (_LOCALIZER, _MYELO, _T2, _T1, _FLUID_SUPPRESSED, _SAG, _AX, _COR, _SEQUENCE)


def clean_descriptor(text: str) -> str:
    """Only the words of `text` that classification looks for, upper-cased, space-separated,
    in order of appearance, each once: "t2_tse_sag Smith^John 123" -> "T2 TSE SAG".

    Each pattern of `DESCRIPTOR_PATTERNS` finds in the result exactly when it finds in `text`,
    so the built-in rules classify both alike; names, IDs and dates are dropped.
    """
    found = sorted(
        (match.start(), match.group(0).upper())
        for pattern in DESCRIPTOR_PATTERNS
        for match in pattern.finditer(text)
    )
    words: list[str] = []
    for _, word in found:
        if word not in words:
            words.append(word)
    return " ".join(words)


def plane_of(orientation: tuple[float, ...] | None) -> Plane:
    """The plane whose normal (row x column cosines) is closest to the patient x, y or z axis."""
    if orientation is None:
        return Plane.UNKNOWN
    r, c = orientation[:3], orientation[3:]
    normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    axis = max(range(3), key=lambda i: abs(normal[i]))
    return (Plane.SAGITTAL, Plane.CORONAL, Plane.AXIAL)[axis]


def series_plane(orientations: list[tuple[float, ...] | None]) -> Plane:
    """One plane for a series; `mixed` when its images lie in different planes (localizers)."""
    planes = {plane_of(o) for o in orientations}
    planes.discard(Plane.UNKNOWN)
    if not planes:
        return Plane.UNKNOWN
    return planes.pop() if len(planes) == 1 else Plane.MIXED


def weighting_of(series: SeriesSummary, thresholds: Thresholds) -> tuple[str, str]:
    """(`t1`, `t2` or `unknown`, why): timing first, the description when timing is absent."""
    te, tr = series.echo_time, series.repetition_time
    if te is not None and tr is not None:
        timing = f"TE {te:g} ms, TR {tr:g} ms"
        if te >= thresholds.t2_min_echo_time and tr >= thresholds.t2_min_repetition_time:
            return "t2", f"T2-weighted timing ({timing})"
        if te <= thresholds.t1_max_echo_time and tr <= thresholds.t1_max_repetition_time:
            return "t1", f"T1-weighted timing ({timing})"
    text = f"{series.description} {series.protocol_name}"
    if _T2.search(text) and not _T1.search(text):
        return "t2", "description says T2"
    if _T1.search(text) and not _T2.search(text):
        return "t1", "description says T1"
    if te is not None and tr is not None:
        return "unknown", f"timing TE {te:g} ms, TR {tr:g} ms is neither T1 nor T2"
    return "unknown", "no EchoTime/RepetitionTime and no T1/T2 in the description"


def classify_series(series: SeriesSummary, rules: Rules | None = None) -> Classification:
    """Decide the class of one series and why."""
    rules = rules or Rules()
    weighting, weighting_why = weighting_of(series, rules.thresholds)
    for index, rule in enumerate(rules.rules, start=1):
        if rule.matches(series, weighting):
            label = rule.name or f"#{index}"
            return Classification(rule.series_class, f"user rule {label}")
    return _builtin(series, weighting, weighting_why, rules.thresholds)


def _builtin(
    series: SeriesSummary, weighting: str, weighting_why: str, thresholds: Thresholds
) -> Classification:
    other = SeriesClass.OTHER
    text = f"{series.description} {series.protocol_name}"
    if series.modality and series.modality.upper() != "MR":
        return Classification(other, f"modality {series.modality} is not MR")
    if "LOCALIZER" in series.image_type.upper() or _LOCALIZER.search(text):
        return Classification(other, "localizer (ImageType or description)")
    if series.plane is Plane.MIXED:
        return Classification(other, "images in several planes (a localizer)")
    if _MYELO.search(text):
        return Classification(SeriesClass.MYELO, "description names myelography")
    te = series.echo_time
    if te is not None and te >= thresholds.myelo_min_echo_time:
        return Classification(
            SeriesClass.MYELO,
            f"heavily T2-weighted (TE {te:g} ms >= {thresholds.myelo_min_echo_time:g})",
        )
    if _FLUID_SUPPRESSED.search(text):
        return Classification(other, "description names STIR/FLAIR/diffusion/Dixon")
    if weighting != "t2":
        return Classification(other, f"not T2: {weighting_why}")
    plane = series.plane
    plane_why = "plane from ImageOrientationPatient"
    if plane is Plane.UNKNOWN:
        if _SAG.search(text):
            plane, plane_why = Plane.SAGITTAL, "no orientation; description says sagittal"
        elif _AX.search(text):
            plane, plane_why = Plane.AXIAL, "no orientation; description says axial"
        elif _COR.search(text):
            plane, plane_why = Plane.CORONAL, "no orientation; description says coronal"
    if plane is Plane.SAGITTAL:
        return Classification(SeriesClass.SAGITTAL_T2, f"{weighting_why}; sagittal ({plane_why})")
    if plane is Plane.AXIAL:
        return Classification(SeriesClass.AXIAL_T2, f"{weighting_why}; axial ({plane_why})")
    return Classification(other, f"T2 but {plane.value} plane")


def summarize_series(
    series_uid: str, records: list[Any], orientations: list[tuple[float, ...] | None]
) -> SeriesSummary:
    """Aggregate a series' instance records (see `lumbar.ingest.read.InstanceRecord`)."""
    first = records[0]
    return SeriesSummary(
        series_uid=series_uid,
        series_number=first.series_number,
        description=first.series_description,
        protocol_name=first.protocol_name,
        modality=first.modality,
        image_type=first.image_type,
        n_images=sum(r.number_of_frames for r in records),
        plane=series_plane(orientations),
        echo_time=_median([r.echo_time for r in records]),
        repetition_time=_median([r.repetition_time for r in records]),
    )


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(present) if present else None


def load_rules(path: Path | None) -> Rules:
    """Read and validate a rules YAML file; None gives the built-in rules only.

    Raises:
        UserError: unreadable YAML, unknown keys, bad regexes, classes or planes.
    """
    if path is None:
        return Rules()

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise UserError(f"cannot read rules file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UserError(
            f"rules file {path} is not valid YAML: {str(err).splitlines()[0]}"
        ) from None
    return parse_rules(data, source=str(path))


def parse_rules(data: Any, source: str = "rules") -> Rules:
    """Validate the parsed YAML of a rules file (see the module docstring for the format)."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping with 'rules' and/or 'thresholds'")
    unknown = set(data) - {"rules", "thresholds"}
    if unknown:
        raise UserError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: rules, thresholds")
    thresholds = Thresholds()
    for key, value in (data.get("thresholds") or {}).items():
        if not hasattr(thresholds, key):
            allowed = ", ".join(Thresholds.__dataclass_fields__)
            raise UserError(f"{source}: unknown threshold {key!r}; allowed: {allowed}")
        if not isinstance(value, int | float) or value < 0:
            raise UserError(f"{source}: threshold {key} must be a number >= 0, got {value!r}")
        setattr(thresholds, key, float(value))
    rules = []
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise UserError(f"{source}: 'rules' must be a list")
    for index, raw in enumerate(raw_rules, start=1):
        rules.append(_parse_rule(raw, f"{source}: rule {index}"))
    return Rules(rules=rules, thresholds=thresholds)


def _parse_rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping")
    allowed = {"name", "class", "plane", "weighting", "min_images", "max_images", *_RULE_FIELDS}
    unknown = set(raw) - allowed
    if unknown:
        raise UserError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    try:
        series_class = SeriesClass(str(raw.get("class", "")))
    except ValueError:
        names = ", ".join(c.value for c in SeriesClass)
        raise UserError(
            f"{where}: 'class' must be one of {names}, got {raw.get('class')!r}"
        ) from None
    rule = Rule(series_class=series_class, name=str(raw.get("name", "")))
    for key in _RULE_FIELDS:
        if key in raw:
            try:
                rule.patterns[key] = re.compile(str(raw[key]))
            except re.error as err:
                raise UserError(f"{where}: bad regular expression for {key}: {err}") from None
    if "plane" in raw:
        try:
            rule.plane = Plane(str(raw["plane"]).lower())
        except ValueError:
            names = ", ".join(p.value for p in Plane)
            raise UserError(f"{where}: 'plane' must be one of {names}") from None
    if "weighting" in raw:
        value = str(raw["weighting"]).lower()
        if value not in ("t1", "t2", "unknown"):
            raise UserError(f"{where}: 'weighting' must be t1, t2 or unknown")
        rule.weighting = value
    for key in ("min_images", "max_images"):
        if key in raw:
            value = raw[key]
            if not isinstance(value, int) or value < 0:
                raise UserError(f"{where}: {key} must be a whole number >= 0")
            setattr(rule, key, value)
    return rule
