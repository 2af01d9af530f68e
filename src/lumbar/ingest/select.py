"""The paper's selection method (section 3.1.2): which frames of a series become the 8 images.

- Sagittal T2: frame Y = floor(n/2) + 1 (Eq. 1, 1-based).
- Axial T2: frame Z = 3x + 2(x - 1) for x = 1..5, i.e. L5-S1..L1-L2 (Eq. 2, Table 1);
  or, with `stacks`, each per-disc stack's middle slice, the stacks found from positions and
  orientations, for scanners whose series do not follow the paper's 5-slices-per-disc layout;
  or, with `geometry`, the slice whose plane lies nearest each disc's centre (from the
  sagittal series), which holds for any layout; `auto` uses Eq. 2 where the series has the
  paper's layout and the geometry agrees, and the geometry otherwise.
- Myelography: two images, the central pair (frames Y-1 and Y of Eq. 1).

Frames are ordered by InstanceNumber (then frame number), or along the slice normal.
A series that does not fit is reported with the reason (`SelectionProblem`), never guessed.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from lumbar.grading import DiscLevel
from lumbar.ingest.discs import DiscCentre, spine_order
from lumbar.ingest.geometry import SlicePlane, plane_angle_deg, spine_axes

PAPER_AXIAL_FRAMES = 25  # 5 slices per disc level in the paper's series
STACK_ANGLE_DEGREES = 3.0  # slices closer than this in orientation belong to one stack
STACK_GAP_FACTOR = 1.6  # a gap this many times the typical slice spacing starts a new stack
# A slice crosses a disc when its plane lies within half the slice spacing of the disc centre,
# plus this much for rounding and a localiser's error along the spine.
CROSSING_TOLERANCE_MM = 1.0
LONE_SLICE_SPACING_MM = 4.0  # spacing assumed for a slice that has no neighbour in its stack


class FrameOrder(StrEnum):
    """How frames of a series are put in sequence before Eq. 1 / Eq. 2 count them."""

    INSTANCE = "instance"
    POSITION = "position"


class AxialSelection(StrEnum):
    """`paper`: Eq. 2 on the ordered frames; `stacks`: middle slice of each per-disc stack;
    `geometry`: the slice nearest each disc centre; `auto`: Eq. 2 where the layout is the
    paper's and the geometry agrees, the geometry otherwise."""

    PAPER = "paper"
    STACKS = "stacks"
    GEOMETRY = "geometry"
    AUTO = "auto"


class Rule(StrEnum):
    """Which rule chose an image (images.csv's `selection_rule`)."""

    EQ1 = "eq1"
    EQ2 = "eq2"
    STACKS = "stacks"
    GEOMETRY = "geometry"


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
    spacing: tuple[float, float] | None = None  # PixelSpacing (row, column) mm
    size: tuple[int, int] | None = None  # (rows, columns)


@dataclass(frozen=True)
class AxialChoice:
    """The image chosen for one disc, by which rule and why; for geometry, where the disc is.

    Attributes:
        distance_mm: signed distance from the slice plane to the disc centre (along the
            slice normal), when a centre is known.
        angle_deg: angle between the slice plane and the disc plane (whose normal is the
            local spine axis), when two or more centres are known.
        pixel: the disc centre projected into the image (x = column, y = row), when
            PixelSpacing is known.
    """

    frame: Frame
    rule: Rule
    reason: str
    distance_mm: float | None = None
    angle_deg: float | None = None
    pixel: tuple[float, float] | None = None


@dataclass
class AxialResult:
    """The axial selection of one patient: a choice per disc level found, warnings about the
    layout, (as errors) the levels that could not be chosen, with why, and notes (info)."""

    chosen: dict[DiscLevel, AxialChoice]
    warnings: list[str]
    missing: list[str]
    notes: list[str] = field(default_factory=list)


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


def select_axial_images(
    frames: Sequence[Frame],
    order: FrameOrder,
    method: AxialSelection,
    centres: Sequence[DiscCentre] | None = None,
    centres_note: str = "",
    series_count: int = 1,
) -> AxialResult:
    """One image per disc level by `method`, with the rule and reason for each.

    Args:
        frames: every axial T2 image considered (for `geometry`/`auto`, possibly from several
            series of one study).
        centres: disc centres in the same patient coordinates (same study), if known.
        centres_note: why there are no centres, for the report.
        series_count: how many series `frames` come from (Eq. 2 counts within one series).

    Raises:
        SelectionProblem: the method cannot be applied at all (see the message).
    """
    if method in (AxialSelection.PAPER, AxialSelection.STACKS):
        by_level, warnings = select_axial(frames, order, method)
        rule = Rule.EQ2 if method is AxialSelection.PAPER else Rule.STACKS
        reason = (
            "Eq. 2 (axial selection 'paper')"
            if method is AxialSelection.PAPER
            else "middle slice of the disc's stack (axial selection 'stacks')"
        )
        return AxialResult(
            {lv: AxialChoice(f, rule, reason) for lv, f in by_level.items()}, warnings, []
        )
    if method is AxialSelection.GEOMETRY:
        if not centres:
            raise SelectionProblem(
                f"axial selection 'geometry' needs disc centres and has none ({centres_note})"
            )
        return select_axial_geometry(frames, centres)
    return _select_axial_auto(frames, order, centres or [], centres_note, series_count)


def disc_distances(frames: Sequence[Frame], points: np.ndarray) -> np.ndarray:
    """Signed distance (mm) from each frame's plane to each point: shape (frames, points).

    Raises:
        SelectionProblem: a frame without position or orientation.
    """
    missing = sum(1 for f in frames if f.position is None or f.orientation is None)
    if missing:
        raise SelectionProblem(
            f"{missing} of {len(frames)} axial images lack ImagePositionPatient or "
            "ImageOrientationPatient, which geometric selection needs"
        )
    origins = np.array([f.position for f in frames], dtype=float)
    normals = np.array([_normal(f.orientation) for f in frames], dtype=float)
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    return np.einsum("fk,fpk->fp", normals, points[None, :, :] - origins[:, None, :])


def select_axial_geometry(frames: Sequence[Frame], centres: Sequence[DiscCentre]) -> AxialResult:
    """For each lumbar disc with a centre, the slice whose plane lies nearest it, if that slice
    crosses the disc (within half its stack's spacing + `CROSSING_TOLERANCE_MM`); a disc no
    slice crosses, or without a centre, is listed in `missing`, never guessed.

    A disc's own stack (every slice of it nearer this disc than any other) with an odd number
    of slices was centred on the disc by the operator: its middle slice is taken instead of the
    nearest whenever it crosses the disc too, so that a centre a millimetre off along the spine
    (a localiser's error) does not move the choice to a neighbouring slice.

    Raises:
        SelectionProblem: no frames, or a frame without position or orientation.
    """
    if not frames:
        raise SelectionProblem("the series has no images")
    ordered = spine_order(list(centres))
    by_level = {c.level: c for c in ordered}
    points = np.array([c.xyz_mm for c in ordered], dtype=float).reshape(-1, 3)
    distances = disc_distances(frames, points)
    axes = spine_axes(points) if len(ordered) >= 2 else None
    stacks = split_stacks(frames)
    spacing = _stack_spacing(frames, stacks)
    position = {(f.sop_uid, f.frame): i for i, f in enumerate(frames)}
    stack_of = {(f.sop_uid, f.frame): stack for stack in stacks for f in stack}
    nearest_disc = np.argmin(np.abs(distances), axis=1)
    chosen: dict[DiscLevel, AxialChoice] = {}
    missing: list[str] = []
    for level in DiscLevel:
        centre = by_level.get(level.value)
        if centre is None:
            missing.append(f"{level.value}: no disc centre found on the sagittal images")
            continue
        j = ordered.index(centre)
        k = int(np.argmin(np.abs(distances[:, j])))
        frame, d = frames[k], float(distances[k, j])
        limit = spacing[k] / 2 + CROSSING_TOLERANCE_MM
        if abs(d) > limit:
            missing.append(
                f"{level.value}: no axial slice crosses the disc (nearest slice "
                f"{abs(d):.1f} mm from its centre)"
            )
            continue
        how = "nearest slice"
        stack = stack_of[(frame.sop_uid, frame.frame)]
        own = all(nearest_disc[position[(f.sop_uid, f.frame)]] == j for f in stack)
        if own and len(stack) % 2 == 1:
            m = position[(stack[len(stack) // 2].sop_uid, stack[len(stack) // 2].frame)]
            if m != k and abs(float(distances[m, j])) <= limit:
                frame, d = frames[m], float(distances[m, j])
                nearest = _mm(float(distances[k, j]))
                how = f"middle slice of the disc's own stack (nearest slice {nearest} mm)"
        pixel = _project_pixel(frame, centre.xyz_mm)
        if pixel is not None and frame.size is not None and not _inside(pixel, frame.size):
            missing.append(f"{level.value}: the disc centre lies outside the nearest slice's image")
            continue
        angle = plane_angle_deg(_normal(frame.orientation), axes[j]) if axes is not None else None
        reason = f"{how}: {_mm(d)} mm from the disc centre"
        reason += f", {angle:.0f} deg to the disc" if angle is not None else ""
        chosen[level] = AxialChoice(frame, Rule.GEOMETRY, reason, d, angle, pixel)
    return AxialResult(chosen, [], missing)


@dataclass(frozen=True)
class SliceDisc:
    """One axial slice against one disc: the signed distance from the slice plane to the disc
    centre (mm) and the angle between slice and disc plane (None with a single centre)."""

    frame: Frame
    level: str
    distance_mm: float
    angle_deg: float | None


def slice_disc_geometry(frames: Sequence[Frame], centres: Sequence[DiscCentre]) -> list[SliceDisc]:
    """Every slice against every disc centre (discs from the head down), in frame order.

    Raises:
        SelectionProblem: a frame without position or orientation.
    """
    ordered = spine_order(list(centres))
    if not ordered or not frames:
        return []
    points = np.array([c.xyz_mm for c in ordered], dtype=float)
    distances = disc_distances(frames, points)
    axes = spine_axes(points) if len(ordered) >= 2 else None
    rows = []
    for i, frame in enumerate(frames):
        normal = _normal(frame.orientation)
        for j, centre in enumerate(ordered):
            angle = plane_angle_deg(normal, axes[j]) if axes is not None else None
            rows.append(SliceDisc(frame, centre.level, float(distances[i, j]), angle))
    return rows


def paper_layout(frames: Sequence[Frame], order: FrameOrder) -> tuple[bool, str]:
    """Whether one series has the paper's layout (25 images, five stacks of five, stored from
    L5-S1 upward, so Eq. 2 counts the right frames) and a short reason either way."""
    try:
        ordered = order_frames(frames, order)
    except SelectionProblem as problem:
        return False, str(problem)
    if len(ordered) != PAPER_AXIAL_FRAMES:
        return False, f"{len(ordered)} images, not the paper's {PAPER_AXIAL_FRAMES}"
    if any(f.position is None or f.orientation is None for f in ordered):
        return True, "25 images; stacks not checked (no position tags)"
    stacks = split_stacks(ordered)
    if sorted(len(s) for s in stacks) != [5] * 5:
        sizes = ", ".join(str(len(s)) for s in stacks)
        return False, f"stacks of {sizes} slices, not five of five"
    axis = _series_normal(ordered)
    runs = [ordered[i : i + 5] for i in range(0, PAPER_AXIAL_FRAMES, 5)]
    members = [{(f.sop_uid, f.frame) for f in s} for s in stacks]
    if any({(f.sop_uid, f.frame) for f in run} not in members for run in runs):
        return False, "a disc's five slices are not consecutive in the series"
    heights = [statistics.fmean(_project(f.position, axis) for f in run) for run in runs]
    if any(b <= a for a, b in itertools.pairwise(heights)):
        return False, "stacks not stored from L5-S1 upward"
    return True, "25 images in five stacks of five, stored from L5-S1 upward"


def _select_axial_auto(
    frames: Sequence[Frame],
    order: FrameOrder,
    centres: Sequence[DiscCentre],
    centres_note: str,
    series_count: int,
) -> AxialResult:
    if series_count > 1:
        fits, layout = False, f"axial T2 split over {series_count} series"
    else:
        fits, layout = paper_layout(frames, order)
    eq2: dict[DiscLevel, Frame] = {}
    if fits:
        ordered = order_frames(frames, order)
        eq2 = {level: ordered[eq2_frame_number(level) - 1] for level in DiscLevel}
    if not centres:
        if not fits:
            raise SelectionProblem(
                f"axial T2 layout is not the paper's ({layout}) and no disc centres are known "
                f"({centres_note}); cannot choose the axial images"
            )
        reason = f"Eq. 2: paper layout ({layout}); geometry not checked ({centres_note})"
        return AxialResult(
            {lv: AxialChoice(f, Rule.EQ2, reason) for lv, f in eq2.items()},
            [],
            [],
            [f"axial images chosen by Eq. 2 (paper layout), not checked: {centres_note}"],
        )
    geometry = select_axial_geometry(frames, centres)
    if not fits:
        geometry.chosen = {
            lv: replace(c, reason=f"{c.reason}; not the paper's layout ({layout})")
            for lv, c in geometry.chosen.items()
        }
        return geometry
    # The paper's layout: five stacks of five, each planned on its disc by the technician who
    # looked at it. Geometry must agree on which stack belongs to which disc (each disc's
    # nearest slice lies in Eq. 2's stack for it); a wrong layout (another order, coverage or
    # split) breaks that by whole discs. Within a stack Eq. 2's middle slice stands: a sagittal
    # localiser a few millimetres off is likelier than stacks planned a slice off their discs,
    # and a large offset is still reported.
    ordered_centres = spine_order(list(centres))
    by_level = {c.level: c for c in ordered_centres}
    keys = [(f.sop_uid, f.frame) for f in frames]
    stack_of = {
        (f.sop_uid, f.frame): i for i, stack in enumerate(split_stacks(frames)) for f in stack
    }
    spacing = dict(zip(keys, _stack_spacing(frames), strict=True))
    points = np.array([c.xyz_mm for c in ordered_centres], dtype=float)
    distances = disc_distances(frames, points)
    offsets = []  # |distance| / slice spacing of each checked Eq. 2 frame
    wrong = []
    for level, frame in eq2.items():
        centre = by_level.get(level.value)
        if centre is None:
            continue
        j = ordered_centres.index(centre)
        nearest = keys[int(np.argmin(np.abs(distances[:, j])))]
        key = (frame.sop_uid, frame.frame)
        d = abs(float(distances[keys.index(key), j]))
        offsets.append(d / spacing[key])
        if stack_of[nearest] != stack_of[key]:
            wrong.append(f"{level.value}: {d:.1f} mm")
    checked = len(offsets)
    if not checked:  # centres, but none of a lumbar disc: as without centres
        note = "no lumbar disc centre found on the sagittal images"
        reason = f"Eq. 2: paper layout ({layout}); geometry not checked ({note})"
        return AxialResult(
            {lv: AxialChoice(f, Rule.EQ2, reason) for lv, f in eq2.items()},
            [],
            [],
            [f"axial images chosen by Eq. 2 (paper layout), not checked: {note}"],
        )
    if wrong:
        geometry.chosen = {
            lv: replace(c, reason=f"{c.reason}; Eq. 2's stacks are not its discs'")
            for lv, c in geometry.chosen.items()
        }
        geometry.warnings.append(
            "paper layout, but geometry puts the discs in other stacks than Eq. 2 "
            f"({', '.join(wrong)} from Eq. 2's frame): geometry used"
        )
        return geometry
    warnings = []
    if statistics.median(offsets) > 0.5:
        warnings.append(
            "Eq. 2 kept, but the disc centres lie more than half a slice from most of its "
            f"frames (median {statistics.median(offsets):.1f} slices): check the sagittal "
            "localisation or the stack planning"
        )
    chosen = {}
    for level, frame in eq2.items():
        centre = by_level.get(level.value)
        if centre is None:
            reason = (
                f"Eq. 2: paper layout, geometry agrees on the other {checked} disc(s); "
                "no centre for this one"
            )
            chosen[level] = AxialChoice(frame, Rule.EQ2, reason)
            continue
        d, angle, pixel = _where(frame, centre, ordered_centres)
        reason = (
            f"Eq. 2: paper layout, geometry agrees on the disc's stack ({_mm(d)} mm from the "
            "disc centre)"
        )
        chosen[level] = AxialChoice(frame, Rule.EQ2, reason, d, angle, pixel)
    return AxialResult(chosen, warnings, [])


def _where(
    frame: Frame, centre: DiscCentre, ordered: list[DiscCentre]
) -> tuple[float, float | None, tuple[float, float] | None]:
    """(distance, angle, pixel) of a disc centre relative to one frame."""
    d = float(disc_distances([frame], centre.xyz_mm)[0, 0])
    angle = None
    if len(ordered) >= 2:
        axes = spine_axes(np.array([c.xyz_mm for c in ordered]))
        angle = plane_angle_deg(_normal(frame.orientation), axes[ordered.index(centre)])
    return d, angle, _project_pixel(frame, centre.xyz_mm)


def _mm(value: float) -> str:
    """A signed distance for a reason text, without a negative zero."""
    text = f"{value:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def _stack_spacing(frames: Sequence[Frame], stacks: list[list[Frame]] | None = None) -> list[float]:
    """Each frame's slice spacing (mm): the median gap within its stack."""
    by_key: dict[tuple[str, int], float] = {}
    for stack in stacks if stacks is not None else split_stacks(frames):
        normal = _normal(stack[0].orientation)
        offsets = [_project(f.position, normal) for f in stack]
        gaps = [b - a for a, b in itertools.pairwise(offsets) if b - a > 1e-3]
        value = statistics.median(gaps) if gaps else LONE_SLICE_SPACING_MM
        for f in stack:
            by_key[(f.sop_uid, f.frame)] = value
    return [by_key[(f.sop_uid, f.frame)] for f in frames]


def _project_pixel(frame: Frame, point: np.ndarray) -> tuple[float, float] | None:
    """(x = column, y = row) of a point projected into the frame, when PixelSpacing is known."""
    if frame.spacing is None:
        return None
    x, y = SlicePlane.from_tags(frame.position, frame.orientation, frame.spacing).patient_to_pixel(
        point
    )
    return (float(x), float(y))


def _inside(pixel: tuple[float, float], size: tuple[int, int]) -> bool:
    x, y = pixel
    rows, cols = size
    return -0.5 <= x <= cols - 0.5 and -0.5 <= y <= rows - 0.5


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
