"""Image selection: Eq. 1, Eq. 2 / Table 1, myelography, ordering, stacks, geometry and auto."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lumbar.grading import DiscLevel
from lumbar.ingest.discs import DiscCentre
from lumbar.ingest.select import (
    AxialSelection,
    Frame,
    FrameOrder,
    Rule,
    SelectionProblem,
    eq1_frame_number,
    eq2_frame_number,
    paper_layout,
    select_axial,
    select_axial_geometry,
    select_axial_images,
    select_myelo,
    select_sagittal,
    slice_disc_geometry,
    split_stacks,
)

AX = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def frames(n: int, *, orientation=AX, spacing: float = 4.0, shuffle: bool = False) -> list[Frame]:
    out = [Frame(f"1.{i}", 0, i, (0.0, 0.0, i * spacing), orientation) for i in range(1, n + 1)]
    return list(reversed(out)) if shuffle else out


def tilted(angle_degrees: float) -> tuple[float, ...]:
    a = math.radians(angle_degrees)
    return (1.0, 0.0, 0.0, 0.0, math.cos(a), math.sin(a))


def test_eq1_matches_the_papers_example() -> None:
    assert eq1_frame_number(13) == 7  # "if we have 13 images in T2-sag, we select the seventh"
    assert [eq1_frame_number(n) for n in (1, 2, 11, 12)] == [1, 2, 6, 7]


def test_eq2_matches_table_1() -> None:
    table1 = {
        DiscLevel.L5_S1: 3,
        DiscLevel.L4_L5: 8,
        DiscLevel.L3_L4: 13,
        DiscLevel.L2_L3: 18,
        DiscLevel.L1_L2: 23,
    }
    assert {level: eq2_frame_number(level) for level in DiscLevel} == table1


def test_sagittal_picks_eq1_in_instance_order_whatever_the_file_order() -> None:
    chosen = select_sagittal(frames(13, shuffle=True), FrameOrder.INSTANCE)
    assert chosen.instance_number == 7


def test_axial_paper_selection() -> None:
    picked, warnings = select_axial(frames(25), FrameOrder.INSTANCE, AxialSelection.PAPER)
    assert {lv.code: f.instance_number for lv, f in picked.items()} == {
        "51": 3,
        "45": 8,
        "34": 13,
        "23": 18,
        "12": 23,
    }
    assert warnings == []


def test_axial_series_too_short_is_reported_not_guessed() -> None:
    with pytest.raises(SelectionProblem, match=r"has 20 images; Eq\. 2 needs at least 23"):
        select_axial(frames(20), FrameOrder.INSTANCE, AxialSelection.PAPER)


def test_axial_series_of_unusual_length_gives_a_warning() -> None:
    _, warnings = select_axial(frames(30), FrameOrder.INSTANCE, AxialSelection.PAPER)
    assert "30 images" in warnings[0]


def test_order_by_position_ignores_instance_numbers() -> None:
    scrambled = [
        Frame(f.sop_uid, 0, 100 - (f.instance_number or 0) * 7 % 13, f.position, f.orientation)
        for f in frames(13)
    ]
    chosen = select_sagittal(scrambled, FrameOrder.POSITION)
    assert chosen.position == (0.0, 0.0, 28.0)  # the 7th slice from the bottom


def test_missing_or_repeated_instance_numbers_are_reported() -> None:
    broken = frames(5)
    broken[2] = Frame("x", 0, None, (0.0, 0.0, 9.0), AX)
    with pytest.raises(SelectionProblem, match="InstanceNumber missing on 1 of 5"):
        select_sagittal(broken, FrameOrder.INSTANCE)
    repeated = frames(5)
    repeated[1] = Frame("y", 0, 1, (0.0, 0.0, 8.0), AX)
    with pytest.raises(SelectionProblem, match="repeated"):
        select_sagittal(repeated, FrameOrder.INSTANCE)


def test_position_order_needs_positions() -> None:
    with pytest.raises(SelectionProblem, match="ImagePositionPatient missing"):
        select_sagittal([Frame("a", 0, 1, None, AX)], FrameOrder.POSITION)


def test_multiframe_frames_are_ordered_within_their_instance() -> None:
    multi = [Frame("mf", i, 1, (0.0, 0.0, float(i)), AX) for i in range(11)]
    assert select_sagittal(multi, FrameOrder.INSTANCE).frame == 5


@pytest.mark.parametrize(("n", "expected"), [(1, [1]), (2, [1, 2]), (3, [1, 2]), (6, [3, 4])])
def test_myelo_takes_the_central_pair(n: int, expected: list[int]) -> None:
    picked = select_myelo(frames(n), FrameOrder.INSTANCE)
    assert [f.instance_number for f in picked] == expected


def _disc_stacks(sizes: list[int], angles: list[float], gap: float = 30.0) -> list[Frame]:
    """Per-disc stacks bottom (L5-S1) to top, acquired top-down as some scanners do."""
    out = []
    z = 0.0
    number = 1
    for size, angle in zip(sizes, angles, strict=True):
        for k in range(size):
            out.append(Frame(f"s{number}", 0, 0, (0.0, 0.0, z + k * 3.0), tilted(angle)))
            number += 1
        z += gap
    # Instance numbers top-down: the paper's Eq. 2 would pick the wrong discs here.
    return [Frame(f.sop_uid, 0, len(out) - i, f.position, f.orientation) for i, f in enumerate(out)]


def test_stacks_take_each_discs_middle_slice_bottom_up() -> None:
    series = _disc_stacks([3, 5, 4, 5, 3], [-10, -5, 0, 8, 15])
    picked, _ = select_axial(series, FrameOrder.INSTANCE, AxialSelection.STACKS)
    z = {lv: f.position[2] for lv, f in picked.items()}
    assert z == {
        DiscLevel.L5_S1: 3.0,
        DiscLevel.L4_L5: 36.0,
        DiscLevel.L3_L4: 66.0,
        DiscLevel.L2_L3: 96.0,
        DiscLevel.L1_L2: 123.0,
    }


def test_parallel_stacks_are_split_by_gaps() -> None:
    series = _disc_stacks([5, 5, 5, 5, 5], [0, 0, 0, 0, 0])
    assert sorted(len(s) for s in split_stacks(series)) == [5, 5, 5, 5, 5]


def test_wrong_number_of_stacks_is_reported() -> None:
    series = _disc_stacks([5, 5, 5], [0, 10, 20])
    with pytest.raises(SelectionProblem, match="found 3 per-disc stacks"):
        select_axial(series, FrameOrder.INSTANCE, AxialSelection.STACKS)


def test_stacks_need_geometry() -> None:
    series = [Frame(f"a{i}", 0, i, None, None) for i in range(25)]
    with pytest.raises(SelectionProblem, match="lack ImagePositionPatient"):
        select_axial(series, FrameOrder.INSTANCE, AxialSelection.STACKS)


# --------------------------------------------------------------------- geometry and auto

LEVEL_Z = {  # disc centres 35 mm apart along z, L5-S1 lowest
    DiscLevel.L5_S1: 0.0,
    DiscLevel.L4_L5: 35.0,
    DiscLevel.L3_L4: 70.0,
    DiscLevel.L2_L3: 105.0,
    DiscLevel.L1_L2: 140.0,
}


def centres(levels=tuple(DiscLevel), dz: float = 0.0) -> list[DiscCentre]:
    return [DiscCentre(lv.value, np.array([0.0, 0.0, LEVEL_Z[lv] + dz]), 1.0) for lv in levels]


def paper_frames(gap: float = 4.0, reverse: bool = False, per_disc: int = 5) -> list[Frame]:
    """Per-disc stacks of `per_disc` slices centred on each disc, stored from L5-S1 up."""
    out = []
    for lv in sorted(DiscLevel, key=lambda lv: lv.eq2_index):
        for k in range(per_disc):
            z = LEVEL_Z[lv] + (k - (per_disc - 1) / 2) * gap
            out.append((z, f"{lv.code}.{k}"))
    if reverse:
        out.reverse()
    return [
        Frame(uid, 0, i, (-50.0, -50.0, z), AX, (0.5, 0.5), (200, 200))
        for i, (z, uid) in enumerate(out, start=1)
    ]


def test_geometry_takes_the_slice_nearest_each_disc_with_distance_angle_and_pixel() -> None:
    result = select_axial_geometry(paper_frames(per_disc=4), centres(dz=0.5))
    assert result.missing == []
    for lv, choice in result.chosen.items():
        # four slices at -6, -2, +2, +6 mm: the disc (shifted +0.5 mm) is nearest the +2 mm one
        assert choice.frame.sop_uid == f"{lv.code}.2"
        assert choice.distance_mm == pytest.approx(-1.5)
        assert choice.angle_deg == pytest.approx(0.0)
        assert choice.pixel == pytest.approx((100.0, 100.0))  # (0, 0) is 50 mm = 100 px in
        assert choice.rule is Rule.GEOMETRY


def test_geometry_reports_a_disc_no_slice_crosses_and_a_disc_without_centre() -> None:
    lower = [f for f in paper_frames() if f.sop_uid[:2] in ("51", "45", "34")]
    result = select_axial_geometry(lower, centres(levels=tuple(DiscLevel)[1:]))
    assert set(result.chosen) == {DiscLevel.L3_L4, DiscLevel.L4_L5, DiscLevel.L5_S1}
    assert result.missing[0] == "L1-L2: no disc centre found on the sagittal images"
    assert result.missing[1].startswith("L2-L3: no axial slice crosses the disc (nearest slice 27")


def test_geometry_angle_is_between_slice_and_disc_plane() -> None:
    # spine axis tilted 20 degrees in the y-z plane; untilted axial slices through each disc
    a = math.radians(20)
    tilted_centres = [
        DiscCentre(
            lv.value, np.array([0.0, LEVEL_Z[lv] * math.sin(a), LEVEL_Z[lv] * math.cos(a)]), 1.0
        )
        for lv in DiscLevel
    ]
    frames_ = [
        Frame(f"{lv.code}", 0, i, (0.0, 0.0, float(c.xyz_mm[2])), AX)
        for i, (lv, c) in enumerate(zip(DiscLevel, tilted_centres, strict=True), start=1)
    ]
    result = select_axial_geometry(frames_, tilted_centres)
    assert all(c.angle_deg == pytest.approx(20.0) for c in result.chosen.values())
    assert all(c.pixel is None for c in result.chosen.values())  # no PixelSpacing


def test_auto_keeps_eq2_where_the_layout_is_the_papers_and_geometry_agrees() -> None:
    result = select_axial_images(
        paper_frames(), FrameOrder.INSTANCE, AxialSelection.AUTO, centres()
    )
    assert {c.rule for c in result.chosen.values()} == {Rule.EQ2}
    assert {lv: c.frame.instance_number for lv, c in result.chosen.items()} == {
        lv: eq2_frame_number(lv) for lv in DiscLevel
    }
    assert all("geometry agrees" in c.reason for c in result.chosen.values())


def test_auto_uses_geometry_for_a_reversed_series_even_without_centres_it_refuses_eq2() -> None:
    frames_ = paper_frames(reverse=True)
    result = select_axial_images(frames_, FrameOrder.INSTANCE, AxialSelection.AUTO, centres())
    assert {c.rule for c in result.chosen.values()} == {Rule.GEOMETRY}
    assert all(c.frame.sop_uid == f"{lv.code}.2" for lv, c in result.chosen.items())
    assert all("not stored from L5-S1 upward" in c.reason for c in result.chosen.values())
    with pytest.raises(SelectionProblem, match=r"not the paper's .* no disc centres"):
        select_axial_images(frames_, FrameOrder.INSTANCE, AxialSelection.AUTO, [], "no T2 SAG")


def test_auto_without_centres_uses_eq2_on_the_papers_layout_and_notes_it() -> None:
    result = select_axial_images(
        paper_frames(), FrameOrder.INSTANCE, AxialSelection.AUTO, None, "no sagittal T2 series"
    )
    assert {c.rule for c in result.chosen.values()} == {Rule.EQ2}
    assert result.notes == [
        "axial images chosen by Eq. 2 (paper layout), not checked: no sagittal T2 series"
    ]


def test_auto_drops_eq2_when_geometry_puts_the_discs_in_other_stacks() -> None:
    # the paper's layout, but the centres say every disc lies one disc higher (the axial stacks
    # would be T12-L1..L4-L5): the stacks are not the discs Eq. 2 names
    result = select_axial_images(
        paper_frames(), FrameOrder.INSTANCE, AxialSelection.AUTO, centres(dz=-35.0)
    )
    assert {c.rule for c in result.chosen.values()} == {Rule.GEOMETRY}
    assert result.warnings[0].startswith(
        "paper layout, but geometry puts the discs in other stacks than Eq. 2 (L1-L2: 35.0 mm"
    )
    # each disc gets the middle of the stack it lies in: the one Eq. 2 gave the disc below
    assert result.chosen[DiscLevel.L1_L2].frame.sop_uid == "23.2"
    assert DiscLevel.L5_S1 not in result.chosen  # no slice crosses it any more


def test_paper_layout_checks() -> None:
    assert paper_layout(paper_frames(), FrameOrder.INSTANCE)[0]
    assert paper_layout(paper_frames(per_disc=4), FrameOrder.INSTANCE) == (
        False,
        "20 images, not the paper's 25",
    )
    assert not paper_layout(paper_frames(reverse=True), FrameOrder.INSTANCE)[0]
    assert paper_layout(paper_frames(reverse=True), FrameOrder.POSITION)[0]
    assert (
        select_axial_images(
            paper_frames(), FrameOrder.INSTANCE, AxialSelection.AUTO, centres(), series_count=2
        )
        .chosen[DiscLevel.L1_L2]
        .reason.endswith("not the paper's layout (axial T2 split over 2 series)")
    )


def test_geometry_needs_positions_and_centres() -> None:
    with pytest.raises(SelectionProblem, match="lack ImagePositionPatient"):
        select_axial_geometry(frames(25, orientation=None), centres())
    with pytest.raises(SelectionProblem, match="needs disc centres and has none \\(why\\)"):
        select_axial_images(paper_frames(), FrameOrder.INSTANCE, AxialSelection.GEOMETRY, [], "why")


def test_geometry_prefers_the_middle_of_a_discs_own_odd_stack_when_it_crosses_too() -> None:
    # five slices 4 mm apart centred on each disc; the centres are 2.5 mm off along the spine
    result = select_axial_geometry(paper_frames(), centres(dz=2.5))
    for lv, choice in result.chosen.items():
        assert choice.frame.sop_uid == f"{lv.code}.2"
        assert choice.distance_mm == pytest.approx(2.5)
        assert choice.reason.startswith("middle slice of the disc's own stack (nearest slice -1.5")
    # 3 mm off: the middle slice no longer crosses (limit 4 / 2 + 1 mm), the nearest is taken
    far = select_axial_geometry(paper_frames(), centres(dz=3.5))
    assert all(c.frame.sop_uid == f"{lv.code}.3" for lv, c in far.chosen.items())
    # one continuous stack is no disc's own: the nearest slice
    parallel = [Frame(f"p{i}", 0, i, (0.0, 0.0, i * 4.0), AX) for i in range(-5, 40)]
    result = select_axial_geometry(parallel, centres(dz=1.5))
    assert len(result.chosen) == 5
    assert all(abs(c.distance_mm) <= 2.0 for c in result.chosen.values())
    assert all(c.reason.startswith("nearest slice: ") for c in result.chosen.values())


def test_auto_keeps_eq2_within_its_stacks_and_reports_a_large_offset() -> None:
    noisy = centres()
    noisy[2] = DiscCentre(noisy[2].level, noisy[2].xyz_mm + np.array([0.0, 0.0, 3.5]), 0.8)
    kept = select_axial_images(paper_frames(), FrameOrder.INSTANCE, AxialSelection.AUTO, noisy)
    assert {c.rule for c in kept.chosen.values()} == {Rule.EQ2} and kept.warnings == []
    # every centre 8 mm (two slices) off: still each disc's own stack, so Eq. 2 stands, said so
    off = select_axial_images(
        paper_frames(), FrameOrder.INSTANCE, AxialSelection.AUTO, centres(dz=8.0)
    )
    assert {c.rule for c in off.chosen.values()} == {Rule.EQ2}
    assert {lv: c.frame.instance_number for lv, c in off.chosen.items()} == {
        lv: eq2_frame_number(lv) for lv in DiscLevel
    }
    assert off.warnings == [
        "Eq. 2 kept, but the disc centres lie more than half a slice from most of its frames "
        "(median 2.0 slices): check the sagittal localisation or the stack planning"
    ]


def test_slice_disc_geometry_measures_every_slice_against_every_disc() -> None:
    rows = slice_disc_geometry(paper_frames(), centres(dz=0.5))
    assert len(rows) == 25 * 5
    first = [r for r in rows if r.frame.sop_uid == "51.0"]  # L5-S1's lowest slice, z = -8
    assert [r.level for r in first] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert [r.distance_mm for r in first] == pytest.approx([148.5, 113.5, 78.5, 43.5, 8.5])
    assert all(r.angle_deg == pytest.approx(0.0) for r in rows)
    assert slice_disc_geometry(paper_frames(), []) == []


def test_auto_with_only_thoracic_centres_is_eq2_unchecked() -> None:
    thoracic = [DiscCentre("T12-L1", np.array([0.0, 0.0, 175.0]), 0.9)]
    result = select_axial_images(paper_frames(), FrameOrder.INSTANCE, AxialSelection.AUTO, thoracic)
    assert {c.rule for c in result.chosen.values()} == {Rule.EQ2}
    assert result.notes == [
        "axial images chosen by Eq. 2 (paper layout), not checked: no lumbar disc centre found "
        "on the sagittal images"
    ]
