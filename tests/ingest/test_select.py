"""The paper's selection method: Eq. 1, Eq. 2 / Table 1, myelography, ordering and stacks."""

from __future__ import annotations

import math

import pytest

from lumbar.grading import DiscLevel
from lumbar.ingest.select import (
    AxialSelection,
    Frame,
    FrameOrder,
    SelectionProblem,
    eq1_frame_number,
    eq2_frame_number,
    select_axial,
    select_myelo,
    select_sagittal,
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
