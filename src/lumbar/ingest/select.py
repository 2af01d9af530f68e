"""The paper's selection method (section 3.1.2): which frames of a series become the 8 images.

- Sagittal T2: frame Y = floor(n/2) + 1 (Eq. 1, 1-based).
- Axial T2: frame Z = 3x + 2(x - 1) for x = 1..5, i.e. L5-S1..L1-L2 (Eq. 2, Table 1);
  or, with `stacks`, each per-disc stack's middle slice, the stacks found from positions and
  orientations, for scanners whose series do not follow the paper's 5-slices-per-disc layout.
- Myelography: two images, the central pair (frames Y-1 and Y of Eq. 1).

Frames are ordered by InstanceNumber (then frame number), or along the slice normal.
A series that does not fit is reported with the reason (`SelectionProblem`), never guessed.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from lumbar.grading import DiscLevel

PAPER_AXIAL_FRAMES = 25  # 5 slices per disc level in the paper's series
STACK_ANGLE_DEGREES = 3.0  # slices closer than this in orientation belong to one stack
STACK_GAP_FACTOR = 1.6  # a gap this many times the typical slice spacing starts a new stack


class FrameOrder(StrEnum):
    """How frames of a series are put in sequence before Eq. 1 / Eq. 2 count them."""

    INSTANCE = "instance"
    POSITION = "position"


class AxialSelection(StrEnum):
    """`paper`: Eq. 2 on the ordered frames; `stacks`: middle slice of each per-disc stack."""

    PAPER = "paper"
    STACKS = "stacks"


class SelectionProblem(Exception):
    """A series that the selection method cannot be applied to; the message says why."""


@dataclass(frozen=True)
class Frame:
    """One 2-D image of a series: an instance, or one frame of a multi-frame instance."""

    sop_uid: str
    frame: int  # 0-based index inside the instance
    instance_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None


def eq1_frame_number(n: int) -> int:
    """Eq. 1: the 1-based frame Y = floor(n/2) + 1 of an n-frame sagittal series."""
    if n < 1:
        raise SelectionProblem("the series has no images")
    return n // 2 + 1


def eq2_frame_number(level: DiscLevel) -> int:
    """Eq. 2: the 1-based frame Z = 3x + 2(x - 1) of a disc level (Table 1: 3, 8, 13, 18, 23)."""
    x = level.eq2_index
    return 3 * x + 2 * (x - 1)


def order_frames(frames: Sequence[Frame], order: FrameOrder) -> list[Frame]:
    """Frames in the sequence the equations count in.

    Raises:
        SelectionProblem: InstanceNumber missing or repeated (with `instance`), or positions
            missing (with `position`).
    """
    if not frames:
        raise SelectionProblem("the series has no images")
    if order is FrameOrder.INSTANCE:
        missing = sum(1 for f in frames if f.instance_number is None)
        if missing:
            raise SelectionProblem(
                f"InstanceNumber missing on {missing} of {len(frames)} images; use frame order "
                "'position'"
            )
        keys = [(f.instance_number, f.frame) for f in frames]
        if len(set(keys)) != len(keys):
            raise SelectionProblem(
                "InstanceNumber repeated within the series; use frame order 'position'"
            )
        return sorted(frames, key=lambda f: (f.instance_number, f.frame, f.sop_uid))
    normal = _series_normal(frames)
    return sorted(
        frames,
        key=lambda f: (_project(f.position, normal), f.instance_number or 0, f.frame, f.sop_uid),
    )


def select_sagittal(frames: Sequence[Frame], order: FrameOrder) -> Frame:
    """Eq. 1 on a sagittal T2 series."""
    ordered = order_frames(frames, order)
    return ordered[eq1_frame_number(len(ordered)) - 1]


def select_myelo(frames: Sequence[Frame], order: FrameOrder) -> list[Frame]:
    """The two central myelography images (frames Y-1 and Y of Eq. 1); one if only one exists."""
    ordered = order_frames(frames, order)
    if len(ordered) == 1:
        return ordered
    y = eq1_frame_number(len(ordered))
    return [ordered[y - 2], ordered[y - 1]]


def select_axial(
    frames: Sequence[Frame], order: FrameOrder, method: AxialSelection
) -> tuple[dict[DiscLevel, Frame], list[str]]:
    """One frame per disc level, and warnings about an unusual layout.

    Raises:
        SelectionProblem: too few frames for Eq. 2, or not five stacks.
    """
    if method is AxialSelection.STACKS:
        return _select_axial_stacks(frames), []
    ordered = order_frames(frames, order)
    n = len(ordered)
    needed = eq2_frame_number(DiscLevel.L1_L2)
    if n < needed:
        raise SelectionProblem(
            f"axial T2 series has {n} images; Eq. 2 needs at least {needed} "
            f"(frame {needed} is L1-L2); try axial selection 'stacks'"
        )
    warnings = []
    if n != PAPER_AXIAL_FRAMES:
        warnings.append(
            f"axial T2 series has {n} images, not the paper's {PAPER_AXIAL_FRAMES} (5 per disc); "
            "check the selection or use axial selection 'stacks'"
        )
    return {level: ordered[eq2_frame_number(level) - 1] for level in DiscLevel}, warnings


def split_stacks(frames: Sequence[Frame]) -> list[list[Frame]]:
    """Split frames into stacks: same orientation (within 3 degrees) and no large position gap.

    Each stack is sorted along its normal; stacks come in no particular order.

    Raises:
        SelectionProblem: a frame without position or orientation.
    """
    missing = sum(1 for f in frames if f.position is None or f.orientation is None)
    if missing:
        raise SelectionProblem(
            f"{missing} of {len(frames)} axial images lack ImagePositionPatient or "
            "ImageOrientationPatient, which axial selection 'stacks' needs"
        )
    groups: list[tuple[tuple[float, float, float], list[Frame]]] = []
    cos_limit = math.cos(math.radians(STACK_ANGLE_DEGREES))
    for frame in frames:
        normal = _normal(frame.orientation)
        for group_normal, members in groups:
            if abs(_dot(group_normal, normal)) >= cos_limit:
                members.append(frame)
                break
        else:
            groups.append((normal, [frame]))
    stacks: list[list[Frame]] = []
    for normal, members in groups:
        members.sort(key=lambda f: (_project(f.position, normal), f.sop_uid, f.frame))
        offsets = [_project(f.position, normal) for f in members]
        gaps = [b - a for a, b in itertools.pairwise(offsets)]
        positive = [g for g in gaps if g > 1e-3]
        spacing = statistics.median(positive) if positive else 0.0
        current = [members[0]]
        for gap, frame in zip(gaps, members[1:], strict=True):
            if spacing and gap > STACK_GAP_FACTOR * spacing:
                stacks.append(current)
                current = []
            current.append(frame)
        stacks.append(current)
    return stacks


def _select_axial_stacks(frames: Sequence[Frame]) -> dict[DiscLevel, Frame]:
    stacks = split_stacks(frames)
    levels = list(DiscLevel)
    if len(stacks) != len(levels):
        sizes = ", ".join(str(len(s)) for s in stacks)
        raise SelectionProblem(
            f"found {len(stacks)} per-disc stacks of sizes {sizes} in the axial T2 series; "
            f"need {len(levels)} (L1-L2..L5-S1)"
        )
    axis = _series_normal(frames)
    centres = [
        _project(tuple(statistics.fmean(f.position[i] for f in s) for i in range(3)), axis)  # type: ignore[index]
        for s in stacks
    ]
    # Ascending along the series normal (patient +z, head-wards, for axial) = L5-S1 first,
    # as Table 1 counts x = 1 for L5-S1.
    by_height = [s for _, s in sorted(zip(centres, stacks, strict=True), key=lambda t: t[0])]
    return {
        level: stack[eq1_frame_number(len(stack)) - 1]
        for level, stack in zip(sorted(levels, key=lambda lv: lv.eq2_index), by_height, strict=True)
    }


def _series_normal(frames: Iterable[Frame]) -> tuple[float, float, float]:
    """Mean slice normal, signed so its largest component is positive (so +z for axial)."""
    sums = [0.0, 0.0, 0.0]
    count = 0
    positions = 0
    for frame in frames:
        if frame.position is None:
            raise SelectionProblem("ImagePositionPatient missing; cannot order by position")
        positions += 1
        if frame.orientation is None:
            continue
        normal = _normal(frame.orientation)
        axis = max(range(3), key=lambda i: abs(normal[i]))
        sign = 1.0 if normal[axis] >= 0 else -1.0
        for i in range(3):
            sums[i] += sign * normal[i]
        count += 1
    if not count:
        raise SelectionProblem("ImageOrientationPatient missing; cannot order by position")
    length = math.sqrt(sum(v * v for v in sums)) or 1.0
    return (sums[0] / length, sums[1] / length, sums[2] / length)


def _normal(orientation: tuple[float, ...] | None) -> tuple[float, float, float]:
    assert orientation is not None
    r, c = orientation[:3], orientation[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    length = math.sqrt(sum(v * v for v in n)) or 1.0
    return (n[0] / length, n[1] / length, n[2] / length)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _project(position: Sequence[float] | None, normal: Sequence[float]) -> float:
    if position is None:
        raise SelectionProblem("ImagePositionPatient missing; cannot order by position")
    return _dot(position, normal)
