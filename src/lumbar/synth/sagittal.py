"""Sagittal slices of the lumbar spine: vertebrae T12 to S1, discs, canal, arch, back muscles.

Coordinates are millimetres in the slice plane: u towards posterior (image right), v towards
inferior (image down), origin at the middle of the L3 vertebral body. `x` is the slice's
distance from the midline (patient left positive): the canal shows near the midline, pedicles
and neural foramina further out. Discs carry the same lesions as on the axial images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lumbar.grading import LEVELS, DiscLevel
from lumbar.synth import tissue as T
from lumbar.synth.axial import _CANAL_FACTOR, _FORAMEN_FACTOR, DiscLesion
from lumbar.synth.canvas import Canvas
from lumbar.synth.cohort import Anatomy, LevelGrades

Signal = Callable[[T.Tissue], float]
BODY_HALF_AP = 17.0
BODY_HALF_HEIGHT = 13.0
VERTEBRAE = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")


@dataclass(frozen=True)
class Segment:
    """Centre (u, v) and tilt (rad) of a vertebra or disc along the lordotic curve."""

    u: float
    v: float
    tilt: float


@dataclass(frozen=True)
class SpineCurve:
    """Vertebral bodies T12..S1 and the five lumbar discs between L1 and S1; with thoracic
    levels, also the bodies above T12 (`upper_bodies`, T11 upward) and the discs T12-L1 upward
    (`upper_discs`, by `grading.SPINE_LEVELS` name)."""

    bodies: tuple[Segment, ...]
    discs: dict[DiscLevel, Segment]
    disc_heights: dict[DiscLevel, float]
    upper_bodies: tuple[Segment, ...] = ()
    upper_discs: dict[str, Segment] = field(default_factory=dict)


THORACIC_BODIES = ("T11", "T10", "T9")  # drawn above T12 when a field of view reaches them


def spine_curve(
    anatomy: Anatomy, lesions: dict[DiscLevel, DiscLesion], thoracic: bool = False
) -> SpineCurve:
    """Stack the vertebrae along a lordotic curve; degenerated discs are lower. With
    `thoracic`, continue the curve upward (kyphosis) to T9 with healthy discs."""
    s = anatomy.scale
    heights: dict[DiscLevel, float] = {}
    for k, level in enumerate(LEVELS):
        base = anatomy.disc_height * (1.0 + 0.07 * k) * (0.8 if level is DiscLevel.L5_S1 else 1.0)
        heights[level] = base * lesions[level].height_factor * s
    # walk down from T12: centres of bodies and discs along the curve
    t12_l1 = anatomy.disc_height * 0.9 * s
    gaps = [t12_l1, *heights.values()]
    centres_v = [0.0]
    for gap in gaps:
        centres_v.append(centres_v[-1] + 2 * BODY_HALF_HEIGHT * s + gap)
    centres_v = [c - centres_v[3] for c in centres_v]  # origin at L3
    span = centres_v[-1] - centres_v[0]

    def u_at(v: float) -> float:  # lordosis: the lumbar spine bows anteriorly (u < 0)
        t = (v - centres_v[0]) / span
        return -anatomy.lordosis * math.sin(math.pi * t) + 12.0 * max(0.0, (t - 0.8) / 0.2) ** 2

    def tilt_at(v: float) -> float:
        dv = 1.0
        return math.atan2(u_at(v + dv) - u_at(v - dv), 2 * dv)

    bodies = tuple(Segment(u_at(v), v, -tilt_at(v)) for v in centres_v)
    discs: dict[DiscLevel, Segment] = {}
    for k, level in enumerate(LEVELS):
        upper, lower = centres_v[k + 1], centres_v[k + 2]
        v = (upper + BODY_HALF_HEIGHT * s + lower - BODY_HALF_HEIGHT * s) / 2
        discs[level] = Segment(u_at(v), v, -tilt_at(v))
    if not thoracic:
        return SpineCurve(bodies=bodies, discs=discs, disc_heights=heights)
    upper_v = [centres_v[1], centres_v[0]]  # L1, T12, then upward
    for _ in THORACIC_BODIES:
        upper_v.append(upper_v[-1] - 2 * BODY_HALF_HEIGHT * s - anatomy.disc_height * 0.75 * s)
    upper_bodies = tuple(Segment(u_at(v), v, -tilt_at(v)) for v in upper_v[2:])
    names = ("T12-L1", "T11-T12", "T10-T11", "T9-T10")
    upper_discs = {}
    for name, lower, upper in zip(names, upper_v[:-1], upper_v[1:], strict=True):
        v = (upper + BODY_HALF_HEIGHT * s + lower - BODY_HALF_HEIGHT * s) / 2
        upper_discs[name] = Segment(u_at(v), v, -tilt_at(v))
    return SpineCurve(bodies, discs, heights, upper_bodies, upper_discs)


def _along(seg: Segment, du: float, dv: float) -> tuple[float, float]:
    """A point offset (du posterior, dv inferior) in the segment's own tilted frame."""
    c, s = math.cos(seg.tilt), math.sin(seg.tilt)
    return seg.u + c * du - s * dv, seg.v + s * du + c * dv


def paint_sagittal_background(
    canvas: Canvas, sig: Signal, anatomy: Anatomy, rng: np.random.Generator
) -> None:
    """Paint what every sagittal slice shares: abdomen, prevertebral fat, back muscles, fat."""
    s = anatomy.scale
    canal_u = BODY_HALF_AP * s + 9.0 * s
    back = canal_u + 9 * s + 50 * s + anatomy.fat_mm
    # --- background: abdomen, back fat and muscles ---
    canvas.rounded_rect(-60, 0, 140, 200, 30, sig(T.BOWEL) * 0.8 + sig(T.FAT) * 0.2)
    for _ in range(10):
        cu, cv = -rng.uniform(40, 120), rng.uniform(-140, 140)
        canvas.ellipse(
            cu,
            cv,
            rng.uniform(5, 14),
            rng.uniform(4, 9),
            sig(T.CSF) * rng.uniform(0.3, 0.5),
            rng.uniform(0, 3),
            opacity=0.7,
        )
    canvas.rounded_rect(back - 20, 0, 20 + 2, 220, 4, sig(T.SKIN))
    canvas.rounded_rect(back - 20, 0, 20, 220, 4, sig(T.FAT))
    muscle = sig(T.MUSCLE) * (1 - anatomy.muscle_fat) + sig(T.FAT) * anatomy.muscle_fat * 0.6
    canvas.rounded_rect(canal_u + 36 * s, 0, 28 * s, 220, 10, muscle)
    for _ in range(int(3 + 8 * anatomy.muscle_fat)):
        canvas.ellipse(
            canal_u + rng.uniform(15, 60) * s,
            rng.uniform(-150, 150),
            0.8,
            rng.uniform(6, 18),
            sig(T.FAT) * 0.8,
            0.0,
            opacity=0.7,
        )
    # prevertebral fat and the aorta / iliac vessels in front of the bodies
    canvas.rounded_rect(-BODY_HALF_AP * s - 10, 0, 12, 200, 6, sig(T.FAT) * 0.85)


def paint_sagittal(
    canvas: Canvas,
    sig: Signal,
    anatomy: Anatomy,
    grades: dict[DiscLevel, LevelGrades],
    lesions: dict[DiscLevel, DiscLesion],
    x: float,
    rng: np.random.Generator,
    thoracic: bool = False,
) -> None:
    """Paint, over the shared background, the sagittal slice at `x` mm from the midline;
    with `thoracic`, also T9-T11 and the healthy discs T9-T10 to T12-L1 above the lumbar spine."""
    s = anatomy.scale
    curve = spine_curve(anatomy, lesions, thoracic)
    ax = abs(x)
    midline = max(0.0, 1.0 - ax / (11.0 * s))  # canal and spinous process fade out laterally
    lateral = 1.0 if 11 * s < ax < 30 * s else 0.0  # pedicles, foramina, facet columns
    body_w = max(0.0, 1.0 - (ax / (26.0 * s)) ** 4)  # vertebral bodies are ~50 mm wide

    canal_u = BODY_HALF_AP * s + 9.0 * s  # canal centre behind the bodies
    if ax > 22 * s:  # psoas alongside the lower bodies
        canvas.ellipse(-5, 60, 18 * s, 90 * s, sig(T.MUSCLE), 0.15)
    if 0 < x < 20 * s:  # aorta in front of the bodies, left of the midline
        canvas.rounded_rect(-BODY_HALF_AP * s - 12, -40, 8 * s, 110, 8, sig(T.FLOW_VOID))

    # --- vertebral bodies ---
    if body_w > 0:
        for k, seg in enumerate(curve.bodies):
            half_ap = BODY_HALF_AP * s * (0.6 + 0.4 * body_w)
            half_h = BODY_HALF_HEIGHT * s * (1.15 if k == len(curve.bodies) - 1 else 1.0)
            tilt = seg.tilt + (0.25 if k == len(curve.bodies) - 1 else 0.0)
            canvas.rounded_rect(seg.u, seg.v, half_ap, half_h, 3, sig(T.CORTEX), tilt)
            canvas.rounded_rect(seg.u, seg.v, half_ap - 1.4, half_h - 1.4, 2.5, sig(T.MARROW), tilt)
            if midline > 0.3:  # basivertebral vein
                cu, cv = _along(seg, half_ap - 4, 0)
                canvas.ellipse(cu, cv, 3, 1.2, sig(T.CSF) * 0.55, tilt)

    # --- discs ---
    for level, seg in curve.discs.items() if body_w > 0 else ():
        lesion = lesions[level]
        h = curve.disc_heights[level] / 2
        half_ap = (BODY_HALF_AP * s + lesion.bulge_mm) * (0.6 + 0.4 * body_w)
        canvas.rounded_rect(seg.u, seg.v, half_ap, h, h * 0.9, sig(T.ANNULUS), seg.tilt)
        canvas.ellipse(seg.u + 1, seg.v, half_ap * 0.7, h * 0.6, sig(lesion.nucleus), seg.tilt)
        if lesion.hernia_mm > 0 and midline > 0.2:
            reach = lesion.hernia_mm * midline
            mig = lesion.migration * 6.0 * s
            cu, cv = _along(seg, half_ap + reach / 2, mig / 2)
            canvas.ellipse(
                cu, cv, reach / 2 + 1.5, h * 0.8 + abs(mig) / 2, sig(lesion.nucleus) * 0.9, seg.tilt
            )

    # --- canal: epidural fat, CSF, cauda equina, conus ---
    if midline > 0:
        for k, seg in enumerate(curve.bodies[:-1]):
            cu = seg.u + canal_u
            canvas.rounded_rect(
                cu, seg.v, 8.5 * s, 24 * s, 3, sig(T.FAT), seg.tilt, opacity=midline
            )
            canvas.rounded_rect(
                cu - 0.5, seg.v, 7.0 * s, 24 * s, 3, sig(T.CSF), seg.tilt, opacity=midline
            )
            if k == 0:  # conus medullaris ends around L1
                canvas.rounded_rect(
                    cu - 1, seg.v - 8, 3.5 * s, 14, 3, sig(T.NERVE), seg.tilt, opacity=midline
                )
        for level, seg in curve.discs.items():  # narrowing at each stenotic disc level
            f = _CANAL_FACTOR[grades[level].scs]
            pinch = 7.0 * s * (1 - f)
            cu = seg.u + canal_u
            if pinch > 0:
                canvas.ellipse(
                    cu - 7.0 * s,
                    seg.v,
                    pinch * 0.7,
                    5.5 * s,
                    sig(T.ANNULUS),
                    seg.tilt,
                    opacity=midline,
                )
                canvas.ellipse(
                    cu + 7.5 * s,
                    seg.v,
                    pinch * 0.9,
                    6.0 * s,
                    sig(T.LIGAMENT),
                    seg.tilt,
                    opacity=midline,
                )
            lesion = lesions[level]
            if lesion.hernia_mm > 0 or lesion.bulge_mm > 0:  # redraw protrusion into the sac
                reach = (lesion.hernia_mm + lesion.bulge_mm) * midline
                mig = lesion.migration * 6.0 * s
                half_ap = BODY_HALF_AP * s
                pu, pv = _along(seg, half_ap + reach / 2, mig / 2)
                canvas.ellipse(
                    pu,
                    pv,
                    reach / 2 + 1.0,
                    curve.disc_heights[level] * 0.4 + abs(mig) / 2,
                    sig(lesion.nucleus) * 0.85,
                    seg.tilt,
                    opacity=midline,
                )
            if lesion.sequestered:
                pu, pv = _along(seg, BODY_HALF_AP * s + 3.5, -12 * s)
                canvas.ellipse(
                    pu, pv, 2.6 * s, 4.0 * s, sig(lesion.nucleus) * 0.85, seg.tilt, opacity=midline
                )
        for _ in range(6):  # cauda equina roots
            du = rng.uniform(-2.5, 3.5) * s
            canvas.rounded_rect(
                canal_u + du + curve.bodies[3].u * 0.5,
                40,
                0.5,
                90,
                0.4,
                sig(T.NERVE),
                0.0,
                opacity=0.6 * midline,
            )

    # --- posterior arch: laminae, spinous processes, ligamentum flavum ---
    for seg in curve.bodies[:-1]:
        cu = seg.u + canal_u + 9.5 * s
        if midline > 0:
            canvas.rounded_rect(
                cu + 2, seg.v + 3, 3.5 * s, 11 * s, 2, sig(T.CORTEX), seg.tilt, opacity=midline
            )
            canvas.rounded_rect(
                cu + 2, seg.v + 3, 2.2 * s, 9.5 * s, 2, sig(T.MARROW), seg.tilt, opacity=midline
            )
            su, sv = cu + 20 * s, seg.v + 4
            canvas.rounded_rect(
                su, sv, 15 * s, 9 * s, 3, sig(T.CORTEX), seg.tilt + 0.15, opacity=midline
            )
            canvas.rounded_rect(
                su, sv, 13.5 * s, 7.5 * s, 3, sig(T.MARROW), seg.tilt + 0.15, opacity=midline
            )
    for level, seg in curve.discs.items():
        if midline > 0:
            lf = 2.0 + 1.5 * grades[level].scs
            cu = seg.u + canal_u + 8.0 * s
            canvas.rounded_rect(
                cu, seg.v, lf / 2, 7 * s, 1, sig(T.LIGAMENT), seg.tilt, opacity=midline
            )

    # --- parasagittal: pedicles, foramina with exiting roots, facet columns ---
    if lateral:
        side_right = x < 0
        for seg in curve.bodies[:-1]:
            pu = seg.u + BODY_HALF_AP * s + 5 * s
            canvas.rounded_rect(pu, seg.v - 2, 5 * s, 8 * s, 2.5, sig(T.CORTEX), seg.tilt)
            canvas.rounded_rect(pu, seg.v - 2, 3.6 * s, 6.6 * s, 2, sig(T.MARROW), seg.tilt)
            fu = pu + 12 * s
            canvas.rounded_rect(fu, seg.v + 8, 6 * s, 12 * s, 3, sig(T.CORTEX), seg.tilt)
            canvas.rounded_rect(fu, seg.v + 8, 4.5 * s, 10.5 * s, 3, sig(T.MARROW), seg.tilt)
        for level, seg in curve.discs.items():
            grade = grades[level].rfs if side_right else grades[level].lfs
            f = _FORAMEN_FACTOR[grade]
            fu, fv = seg.u + BODY_HALF_AP * s + 6 * s, seg.v - 6 * s
            canvas.ellipse(
                fu, fv, 4.5 * s * (0.5 + 0.5 * f), 8.5 * s * f + 1.0, sig(T.FAT), seg.tilt
            )
            canvas.ellipse(fu - 0.5, fv - 3 * s * f, 2.2 * s, 2.2 * s, sig(T.NERVE), seg.tilt)
    if curve.upper_bodies:
        _paint_upper_spine(canvas, sig, curve, s, midline, body_w, canal_u)


def _paint_upper_spine(
    canvas: Canvas,
    sig: Signal,
    curve: SpineCurve,
    s: float,
    midline: float,
    body_w: float,
    canal_u: float,
) -> None:
    """The thoracic bodies above T12, healthy discs T12-L1 upward, the cord and the arches."""
    if body_w > 0:
        half_ap = BODY_HALF_AP * s * 0.9 * (0.6 + 0.4 * body_w)
        for seg in curve.upper_bodies:
            half_h = BODY_HALF_HEIGHT * s * 0.92
            canvas.rounded_rect(seg.u, seg.v, half_ap, half_h, 3, sig(T.CORTEX), seg.tilt)
            canvas.rounded_rect(
                seg.u, seg.v, half_ap - 1.4, half_h - 1.4, 2.5, sig(T.MARROW), seg.tilt
            )
        for seg in curve.upper_discs.values():
            h = 3.0 * s
            canvas.rounded_rect(seg.u, seg.v, half_ap, h, h * 0.9, sig(T.ANNULUS), seg.tilt)
            canvas.ellipse(seg.u + 1, seg.v, half_ap * 0.7, h * 0.6, sig(T.NUCLEUS), seg.tilt)
    if midline > 0:
        for seg in curve.upper_bodies:
            cu = seg.u + canal_u
            canvas.rounded_rect(
                cu, seg.v, 7.5 * s, 24 * s, 3, sig(T.CSF), seg.tilt, opacity=midline
            )
            canvas.rounded_rect(
                cu - 0.5, seg.v, 3.5 * s, 24 * s, 2, sig(T.NERVE), seg.tilt, opacity=midline
            )  # the spinal cord
            su, sv = cu + 20 * s, seg.v + 8
            canvas.rounded_rect(
                su, sv, 13 * s, 6 * s, 3, sig(T.CORTEX), seg.tilt + 0.5, opacity=midline
            )
            canvas.rounded_rect(
                su, sv, 11.5 * s, 4.5 * s, 3, sig(T.MARROW), seg.tilt + 0.5, opacity=midline
            )
