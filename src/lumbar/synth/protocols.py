"""Scanner protocols of the phantom: how the axial T2 slices (and which series) are acquired.

The paper's hospital takes five slices per disc, stacks angled along each disc, stored from L5-S1
upward (`paper`, the default and what Eq. 2 counts on). Other sites do otherwise, and each
variant here is one way real exports break Eq. 2: a different number of slices per disc
(`angled`: 3 to 6), one continuous untilted stack (`parallel`), only the three lowest levels
(`lower3`), slices stored from the head down (`reversed`), the stacks split over two series
(`split`), or no sagittal T2 at all (`nosagt2`). Two vary the sagittal field of view instead
(with the paper's axial series): up to T9 (`thoracic`), or with its lower edge through the
sacrum (`cutsacrum`), which is what naming discs upward from L5-S1 must survive. `mixed` draws
one of them per patient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from lumbar.errors import UserError
from lumbar.grading import LEVELS, DiscLevel
from lumbar.ingest.geometry import SlicePlane

Vector = tuple[float, float, float]


class Protocol(StrEnum):
    """A phantom acquisition protocol; see the module docstring."""

    PAPER = "paper"
    ANGLED = "angled"
    PARALLEL = "parallel"
    LOWER3 = "lower3"
    REVERSED = "reversed"
    SPLIT = "split"
    NOSAGT2 = "nosagt2"
    THORACIC = "thoracic"
    CUTSACRUM = "cutsacrum"
    MIXED = "mixed"

    @classmethod
    def parse(cls, value: str) -> Protocol:
        """The protocol named `value`, or a UserError listing the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = "|".join(p.value for p in cls)
            raise UserError(
                f"unknown protocol {value!r}; choose {choices}", option="protocol"
            ) from None


CONCRETE_PROTOCOLS = tuple(p for p in Protocol if p is not Protocol.MIXED)


def patient_protocol(protocol: Protocol, seed: int, index: int) -> Protocol:
    """The protocol one patient is scanned with: `protocol`, or a per-patient draw for `mixed`."""
    if protocol is not Protocol.MIXED:
        return protocol
    rng = np.random.default_rng([seed, index, 3])
    return CONCRETE_PROTOCOLS[int(rng.integers(len(CONCRETE_PROTOCOLS)))]


@dataclass(frozen=True)
class DiscPose:
    """A disc's true centre (patient mm, LPS) and the unit normal of its mid plane (head-wards)."""

    centre: Vector
    normal: Vector


@dataclass(frozen=True)
class AxialPlane:
    """One planned axial slice: the disc level painted, which slice of it (`offset`, -2..2),
    the point of the plane drawn at the image's anatomical origin, and its directions."""

    level: DiscLevel
    offset: int
    point: Vector
    row: Vector
    col: Vector


@dataclass(frozen=True)
class AxialSeriesPlan:
    """One axial series to acquire: its description, slice gap (mm) and planes in stored order."""

    description: str
    gap: float
    planes: list[AxialPlane]


def _tilted(normal: Vector) -> tuple[Vector, Vector]:
    """Row and column directions of an axial plane with this normal (normal has no x part)."""
    _, ny, nz = normal
    return (1.0, 0.0, 0.0), (0.0, nz, -ny)


def _rotate_about_x(normal: Vector, angle: float) -> Vector:
    _, ny, nz = normal
    c, s = math.cos(angle), math.sin(angle)
    return (0.0, c * ny - s * nz, s * ny + c * nz)


def _plane_point(centre: Vector, normal: Vector, distance: float) -> Vector:
    return tuple(centre[i] + distance * normal[i] for i in range(3))  # type: ignore[return-value]


def offset_category(distance: float, gap: float) -> int:
    """Which of the paper's five slice kinds (-2..2) a plane `distance` mm from a disc shows."""
    return int(max(-2, min(2, round(distance / gap))))


def plan_axial(
    protocol: Protocol,
    discs: dict[DiscLevel, DiscPose],
    thickness: float,
    gap: float,
    rng: np.random.Generator,
) -> list[AxialSeriesPlan]:
    """The axial T2 series of a non-paper protocol, drawn with `rng` (see the module docstring).

    `paper`, `nosagt2`, `thoracic` and `cutsacrum` keep the paper's own series, built
    elsewhere byte for byte as before.
    """
    bottom_up = list(reversed(LEVELS))  # L5-S1 first, as the paper stores them
    if protocol is Protocol.PARALLEL:
        return [_parallel_stack(discs, thickness, rng)]
    if protocol is Protocol.ANGLED:
        planes = []
        for level in bottom_up:
            n = int(rng.integers(3, 7))
            tilt_error = math.radians(float(rng.uniform(-4.0, 4.0)))
            shift = float(rng.uniform(-0.25, 0.25))
            if n % 2 == 0:  # no slice through the middle: one of the two central ones is nearer
                shift = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.35))
            planes.extend(_disc_stack(level, discs[level], n, gap, shift, tilt_error))
        return [AxialSeriesPlan("T2 AX", gap, planes)]
    stacks = {level: _disc_stack(level, discs[level], 5, gap, 0.0, 0.0) for level in bottom_up}
    if protocol is Protocol.LOWER3:
        levels = [DiscLevel.L5_S1, DiscLevel.L4_L5, DiscLevel.L3_L4]
        return [AxialSeriesPlan("T2 AX", gap, [p for lv in levels for p in stacks[lv]])]
    if protocol is Protocol.REVERSED:
        planes = [p for lv in bottom_up for p in stacks[lv]]
        return [AxialSeriesPlan("T2 AX", gap, planes[::-1])]
    if protocol is Protocol.SPLIT:
        low = [p for lv in bottom_up[:3] for p in stacks[lv]]
        high = [p for lv in bottom_up[3:] for p in stacks[lv]]
        return [AxialSeriesPlan("T2 AX L3-S1", gap, low), AxialSeriesPlan("T2 AX L1-L3", gap, high)]
    raise ValueError(f"protocol {protocol} has no planned axial series")


def _disc_stack(
    level: DiscLevel, pose: DiscPose, n: int, gap: float, shift: float, tilt_error: float
) -> list[AxialPlane]:
    """`n` slices `gap` apart along the disc's (slightly mis-angled) normal, bottom up, centred
    `shift` slice gaps away from the disc centre."""
    normal = _rotate_about_x(pose.normal, tilt_error)
    row, col = _tilted(normal)
    planes = []
    for k in range(n):
        steps = k - (n - 1) / 2 + shift
        distance = steps * gap
        planes.append(
            AxialPlane(
                level,
                offset_category(distance, gap),
                _plane_point(pose.centre, normal, distance),
                row,
                col,
            )
        )
    return planes


def _parallel_stack(
    discs: dict[DiscLevel, DiscPose], thickness: float, rng: np.random.Generator
) -> AxialSeriesPlan:
    """One untilted stack, no gap between slices, from below L5-S1 to above L1-L2."""
    spacing = thickness + float(rng.uniform(0.0, 0.5))
    z_low = discs[DiscLevel.L5_S1].centre[2] - 8.0
    z_high = discs[DiscLevel.L1_L2].centre[2] + 8.0
    start = z_low + float(rng.uniform(0.0, spacing))
    count = math.floor((z_high - start) / spacing) + 1
    normal: Vector = (0.0, 0.0, 1.0)
    row, col = _tilted(normal)
    planes = []
    for k in range(count):
        z = start + k * spacing
        level = min(discs, key=lambda lv: abs(discs[lv].centre[2] - z))
        centre = discs[level].centre
        distance = z - centre[2]
        planes.append(
            AxialPlane(level, offset_category(distance, 4.0), (0.0, centre[1], z), row, col)
        )
    return AxialSeriesPlan("T2 AX", spacing, planes)


def nearest_plane(
    centre: Vector, planes: list[tuple[Vector, Vector, Vector]], gaps: list[float]
) -> int | None:
    """Index of the plane (point, row, col) nearest `centre`, if within half its series' gap."""
    best, best_distance = None, math.inf
    for index, ((point, row, col), gap) in enumerate(zip(planes, gaps, strict=True)):
        plane = SlicePlane.from_tags(point, (*row, *col), (1.0, 1.0))  # spacing plays no part
        distance = abs(float(plane.signed_distance(centre)))
        if distance <= gap / 2 + 1e-6 and distance < best_distance:
            best, best_distance = index, distance
    return best
