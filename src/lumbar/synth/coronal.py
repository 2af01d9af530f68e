"""Coronal views: MR myelography (heavily T2-weighted thick slab) and the survey localiser.

Coordinates are millimetres: u towards the patient's left (image right), v inferior (image
down), origin at L3 as in the sagittal view. In the myelogram only fluid is bright: the thecal
sac narrows to a waist at levels with canal stenosis, a root sleeve is cut short on the side of
a foraminal stenosis, and herniated or bulging discs indent the sac.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from lumbar.grading import DiscLevel
from lumbar.synth import tissue as T
from lumbar.synth.axial import _CANAL_FACTOR, _FORAMEN_FACTOR, DiscLesion
from lumbar.synth.canvas import Canvas
from lumbar.synth.cohort import Anatomy, LevelGrades
from lumbar.synth.sagittal import BODY_HALF_HEIGHT, spine_curve

Signal = Callable[[T.Tissue], float]


def paint_myelogram(
    canvas: Canvas,
    sig: Signal,
    anatomy: Anatomy,
    grades: dict[DiscLevel, LevelGrades],
    lesions: dict[DiscLevel, DiscLesion],
    rng: np.random.Generator,
    *,
    oblique: float = 0.0,
) -> None:
    """Paint a coronal (oblique = 0) or rotated-oblique MR myelogram of the lumbar sac."""
    s = anatomy.scale
    curve = spine_curve(anatomy, lesions)
    squeeze = math.cos(oblique)  # an oblique projection foreshortens left-right distances
    csf = sig(T.CSF)
    # faint fluid elsewhere: bowel, renal pelvis, bladder
    for _ in range(12):
        canvas.ellipse(
            rng.uniform(-130, 130),
            rng.uniform(-120, 150),
            rng.uniform(4, 15),
            rng.uniform(3, 10),
            csf * rng.uniform(0.05, 0.2),
            rng.uniform(0, 3),
        )
    canvas.ellipse(0, 175 * s, 45 * s, 25 * s, csf * 0.6)  # bladder at the bottom of the view
    top, bottom = curve.bodies[0].v - 40, curve.bodies[-1].v + 5
    sac_half = 8.5 * s * squeeze
    canvas.rounded_rect(0, (top + bottom) / 2, sac_half, (bottom - top) / 2, sac_half, csf)
    canvas.rounded_rect(0, bottom + 5, sac_half * 0.6, 14, sac_half * 0.6, csf)  # caudal tip
    canvas.rounded_rect(0, curve.bodies[0].v - 25, 3.5 * s, 18, 3, sig(T.NERVE))  # conus
    for _ in range(10):  # cauda equina as faint dark strands
        du = rng.uniform(-0.7, 0.7) * sac_half
        canvas.rounded_rect(
            du,
            (top + bottom) / 2 + 10,
            0.45,
            (bottom - top) / 2 - 12,
            0.4,
            sig(T.NERVE),
            rng.uniform(-0.02, 0.02),
            opacity=0.5,
        )
    for level, seg in curve.discs.items():
        g, lesion = grades[level], lesions[level]
        waist = sac_half * (1 - _CANAL_FACTOR[g.scs]) * 0.95
        if lesion.hernia_mm > 0:
            waist = max(waist, sac_half * 0.45)
        if waist > 0:
            for side in (-1, 1):
                canvas.ellipse(side * (sac_half + 0.5), seg.v, waist + 0.5, 6.0 * s, 0.0)
        for side, grade in ((-1, g.rfs), (1, g.lfs)):  # root sleeves, exiting below the pedicle
            length = 16 * s * _FORAMEN_FACTOR[grade] * squeeze + 2
            cu = side * (sac_half + length / 2 - 1)
            cv = seg.v - BODY_HALF_HEIGHT * s * 0.4
            canvas.rounded_rect(cu, cv, length / 2 + 1, 1.8 * s, 1.5, csf * 0.9, side * 0.6)


def paint_coronal_localiser(
    canvas: Canvas,
    sig: Signal,
    anatomy: Anatomy,
    lesions: dict[DiscLevel, DiscLesion],
) -> None:
    """Paint a coarse coronal survey image: body outline, spine column, psoas, kidneys."""
    s = anatomy.scale
    curve = spine_curve(anatomy, lesions)
    canvas.ellipse(0, 0, 175 * s, 260, sig(T.FAT))
    canvas.ellipse(0, 0, 160 * s, 250, sig(T.BOWEL) * 0.8)
    for side in (-1, 1):
        canvas.ellipse(side * 70 * s, -70, 28 * s, 55 * s, sig(T.KIDNEY), side * -0.2)
        canvas.ellipse(side * 35 * s, 50, 16 * s, 100 * s, sig(T.MUSCLE), side * -0.25)
    for seg in curve.bodies:
        canvas.rounded_rect(0, seg.v, 25 * s, BODY_HALF_HEIGHT * s, 3, sig(T.CORTEX))
        canvas.rounded_rect(0, seg.v, 23.5 * s, BODY_HALF_HEIGHT * s - 1.4, 2.5, sig(T.MARROW))
    for level, seg in curve.discs.items():
        h = curve.disc_heights[level] / 2
        canvas.rounded_rect(0, seg.v, 25 * s, h, h, sig(T.ANNULUS))
        canvas.rounded_rect(0, seg.v, 16 * s, h * 0.6, h * 0.6, sig(lesions[level].nucleus))
