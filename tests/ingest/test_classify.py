"""Series classification: planes, T1/T2 timing, descriptions, user rules and their validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumbar.errors import UserError
from lumbar.ingest.classify import (
    DESCRIPTOR_PATTERNS,
    Plane,
    SeriesClass,
    SeriesSummary,
    classify_series,
    clean_descriptor,
    load_rules,
    parse_rules,
    plane_of,
    series_plane,
)

SAG = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
COR = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
AX = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
AX_TILTED = (1.0, 0.0, 0.0, 0.0, 0.908677, 0.417499)  # a disc-parallel axial (25 degrees)


def summary(**kw) -> SeriesSummary:
    base = dict(
        series_uid="1.2",
        series_number=1,
        description="",
        protocol_name="",
        modality="MR",
        image_type="ORIGINAL\\PRIMARY",
        n_images=15,
        plane=Plane.SAGITTAL,
        echo_time=100.0,
        repetition_time=3000.0,
    )
    base.update(kw)
    return SeriesSummary(**base)


@pytest.mark.parametrize(
    ("orientation", "plane"),
    [
        (SAG, Plane.SAGITTAL),
        (COR, Plane.CORONAL),
        (AX, Plane.AXIAL),
        (AX_TILTED, Plane.AXIAL),
        (None, Plane.UNKNOWN),
    ],
)
def test_plane_from_orientation(orientation, plane) -> None:
    assert plane_of(orientation) is plane


def test_localizer_with_three_planes_is_mixed() -> None:
    assert series_plane([SAG, COR, AX]) is Plane.MIXED
    assert series_plane([AX, AX_TILTED, None]) is Plane.AXIAL


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, SeriesClass.SAGITTAL_T2),
        ({"plane": Plane.AXIAL}, SeriesClass.AXIAL_T2),
        ({"echo_time": 12.0, "repetition_time": 600.0}, SeriesClass.OTHER),  # T1
        ({"description": "MYELO", "plane": Plane.CORONAL, "n_images": 2}, SeriesClass.MYELO),
        (
            {"echo_time": 900.0, "repetition_time": 6000.0, "plane": Plane.CORONAL},
            SeriesClass.MYELO,
        ),
        ({"description": "SURVEY", "plane": Plane.MIXED}, SeriesClass.OTHER),
        ({"plane": Plane.MIXED}, SeriesClass.OTHER),
        ({"image_type": "ORIGINAL\\PRIMARY\\LOCALIZER"}, SeriesClass.OTHER),
        ({"modality": "CT"}, SeriesClass.OTHER),
        ({"description": "STIR SAG"}, SeriesClass.OTHER),
        ({"plane": Plane.CORONAL}, SeriesClass.OTHER),
        # No timing at all: the description decides weighting and, without IOP, the plane.
        (
            {
                "echo_time": None,
                "repetition_time": None,
                "description": "t2_tse_sag",
                "plane": Plane.UNKNOWN,
            },
            SeriesClass.SAGITTAL_T2,
        ),
        (
            {
                "echo_time": None,
                "repetition_time": None,
                "description": "T2 TRA",
                "plane": Plane.UNKNOWN,
            },
            SeriesClass.AXIAL_T2,
        ),
        ({"echo_time": None, "repetition_time": None, "description": "T1 SAG"}, SeriesClass.OTHER),
    ],
)
def test_builtin_rules(kw, expected) -> None:
    result = classify_series(summary(**kw))
    assert result.series_class is expected, result.reason
    assert result.reason


def test_reason_names_the_evidence() -> None:
    reason = classify_series(summary()).reason
    assert "TE 100 ms" in reason and "sagittal" in reason


def test_user_rule_wins_and_is_named_in_the_reason() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "name": "site myelo",
                    "class": "myelo",
                    "series_description": "(?i)^3d heavy",
                    "min_images": 1,
                },
            ]
        }
    )
    result = classify_series(summary(description="3D HEAVY T2 COR", plane=Plane.CORONAL), rules)
    assert result.series_class is SeriesClass.MYELO
    assert "site myelo" in result.reason


def test_user_rule_conditions_must_all_hold() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "class": "other",
                    "series_description": "T2",
                    "plane": "axial",
                    "weighting": "t2",
                    "max_images": 10,
                },
            ]
        }
    )
    assert (
        classify_series(summary(plane=Plane.AXIAL, n_images=25), rules).series_class
        is SeriesClass.AXIAL_T2
    )
    assert (
        classify_series(
            summary(plane=Plane.AXIAL, n_images=8, description="T2"), rules
        ).series_class
        is SeriesClass.OTHER
    )


def test_thresholds_can_be_overridden() -> None:
    rules = parse_rules({"thresholds": {"t2_min_echo_time": 120}})
    assert classify_series(summary(), rules).series_class is SeriesClass.OTHER


def test_rules_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - class: other\n    series_description: '(?i)dixon'\n")
    rules = load_rules(path)
    assert (
        classify_series(summary(description="T2 DIXON SAG"), rules).series_class
        is SeriesClass.OTHER
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [{class: sagital_t2}]", "'class' must be one of"),
        ("rules: [{class: other, series_description: '('}]", "bad regular expression"),
        ("rules: [{class: other, colour: red}]", "unknown key"),
        ("rules: [{class: other, plane: oblique}]", "'plane' must be one of"),
        ("thresholds: {t2_min_echo_time: -1}", "must be a number >= 0"),
        ("thresholds: {te: 1}", "unknown threshold"),
        ("rule: []", "unknown key"),
        ("rules: {class: other}", "'rules' must be a list"),
        ("rules: [: bad", "not valid YAML"),
    ],
)
def test_bad_rules_files_give_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_rules(path)


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read rules file"):
        load_rules(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("t2_tse_sag Smith^John 8675309", "T2 TSE SAG"),
        ("T2 AX (Doe, Jane) 19700101", "T2 AX"),
        ("Myelography MRM heavy T2", "MYELOGRAPHY MRM T2"),
        ("3-plane LOC for pt 12345", "3-PLANE LOC"),
        ("STIR cor Mr Jones", "STIR COR"),
        ("T2* GRE sag", "GRE SAG"),
        ("Patient John Smith", ""),
        ("", ""),
    ],
)
def test_clean_descriptor_keeps_only_the_words_rules_look_for(text: str, cleaned: str) -> None:
    assert clean_descriptor(text) == cleaned


def test_cleaned_descriptor_classifies_like_the_full_text() -> None:
    """Seeded random descriptions made of the rules' words, look-alikes, separators, names and
    numbers: every pattern, and so every built-in decision, sees the same in both texts."""
    import random

    pieces = [
        "t1", "T2", "t2*", "T12", "st2", "sag", "sagittal", "sagx", "ax", "axial", "tra", "trans",
        "cor", "coronal", "stir", "flair", "tirm", "dwi", "adc", "dixon", "myel", "myelo", "mrm",
        "mrmx", "loc", "locx", "scout", "survey", "localizer", "localiser", "3", "3-plane",
        "plane", "pilot", "tri", "tse", "fse", "se", "gre", "space", "fs", "fat", "sat", "3d",
        "2d", "x", "Smith", "John", "8675309", "1970", "^", "_", "-", " ", " ", "/", "(", ")", "*",
    ]  # fmt: skip
    rng = random.Random(17)
    for _ in range(4000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        cleaned = clean_descriptor(text)
        for pattern in DESCRIPTOR_PATTERNS:
            assert bool(pattern.search(text)) == bool(pattern.search(cleaned)), (text, pattern)
        for plane in (Plane.SAGITTAL, Plane.UNKNOWN):
            for te, tr in ((100.0, 3000.0), (None, None), (500.0, 4000.0)):
                raw = summary(description=text, plane=plane, echo_time=te, repetition_time=tr)
                clean = summary(description=cleaned, plane=plane, echo_time=te, repetition_time=tr)
                assert classify_series(raw) == classify_series(clean), text
        assert "SMITH" not in cleaned and "8675309" not in cleaned


DESCRIPTIONS = (
    "t2_tse_sag DOE^JANE 1970",
    "T2 AX L4-5 MRN12345",
    "MYELOGRAPHY 3D",
    "mrm heavy",
    "STIR sag",
    "Survey 3-plane",
    "T2* GRE",
    "ax t1 flair",
    "sagittal T2W_TSE",
    "localizer",
    "DWI b800",
    "",
)


@pytest.mark.parametrize("text", DESCRIPTIONS)
@pytest.mark.parametrize("plane", [Plane.SAGITTAL, Plane.AXIAL, Plane.UNKNOWN])
@pytest.mark.parametrize("timing", [(100.0, 3000.0), (None, None), (10.0, 500.0)])
def test_cleaned_descriptions_classify_the_same(text, plane, timing) -> None:
    from lumbar.ingest.classify import clean_descriptor

    cleaned = clean_descriptor(text)
    assert not set(cleaned.split()) & {"DOE^JANE", "1970", "MRN12345", "L4-5", "B800"}
    te, tr = timing
    original = classify_series(summary(description=text, plane=plane, echo_time=te,
                                       repetition_time=tr))  # fmt: skip
    again = classify_series(summary(description=cleaned, plane=plane, echo_time=te,
                                    repetition_time=tr))  # fmt: skip
    assert again.series_class == original.series_class
