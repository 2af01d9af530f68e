"""Axial slices through a lumbar disc level: disc, canal, foramina, facets, muscles and fat.

Coordinates are millimetres in the slice plane: u towards the patient's left (image right),
v towards posterior (image down), origin at the centre of the disc. Each Table 3 grade changes
what a radiologist looks at: degeneration darkens the nucleus, a bulge widens the disc all
round, a herniation is a focal protrusion into the canal (migration continues onto the
neighbouring slices, sequestration is a separate fragment), and stenosis narrows the canal
(SCS) or the right or left foramen (RFS, LFS).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lumbar.grading import DiscLevel, DiscState, Herniation
from lumbar.synth import tissue as T
from lumbar.synth.canvas import Canvas
from lumbar.synth.cohort import Anatomy, LevelGrades

Signal = Callable[[T.Tissue], float]
_ANGLES = np.linspace(0, 2 * np.pi, 256, endpoint=False, dtype=np.float32)
_POSTERIOR = np.pi / 2

# Canal and foramen size by stenosis grade (fraction of the constitutional size).
_CANAL_FACTOR = (1.0, 0.74, 0.52, 0.34)
_SAC_FACTOR = (1.0, 0.70, 0.45, 0.22)
_FORAMEN_FACTOR = (1.0, 0.68, 0.42, 0.18)
_LIGAMENT_MM = (2.5, 4.0, 5.5, 7.0)


@dataclass(frozen=True)
class DiscLesion:
    """What a level's grades do to its disc, drawn consistently on axial and sagittal images."""

    nucleus: T.Tissue
    bulge_mm: float
    hernia_mm: float
    hernia_angle: float  # rad in the axial plane; π/2 is central posterior
    migration: int  # +1 cranial, -1 caudal, 0 none
    sequestered: bool
    height_factor: float


def disc_lesion(grades: LevelGrades, anatomy: Anatomy, rng: np.random.Generator) -> DiscLesion:
    """Turn one level's grades into the geometric and signal changes of its disc."""
    state = DiscState(grades.disc_state)
    # Desiccation overlaps between classes, as in real cohorts: "normal" discs of older
    # patients are greyer, and many bulges keep a bright nucleus. Shape tells them apart.
    ageing = anatomy.disc_ageing
    darkening = float(rng.uniform(0.0, 0.3)) + ageing
    bulge = hernia = 0.0
    height = float(rng.uniform(0.92, 1.0))
    angle = _POSTERIOR
    if state is DiscState.DEGENERATION:
        darkening = float(rng.uniform(0.45, 1.0)) + 0.5 * ageing
        height = float(rng.uniform(0.65, 0.9))
    elif state is DiscState.BULGE:
        darkening = float(rng.uniform(0.05, 0.6)) + ageing
        bulge = float(rng.uniform(1.3, 3.6))
        height = float(rng.uniform(0.8, 0.97))
    elif state is DiscState.HERNIATION:
        darkening = float(rng.uniform(0.1, 0.65)) + ageing
        hernia = float(rng.uniform(6.5, 10.0))
        angle = _POSTERIOR + float(rng.choice([-1, 1])) * float(rng.uniform(0.0, 0.45))
        height = float(rng.uniform(0.75, 0.92))
    kind = Herniation(grades.herniation)
    migration = int(rng.choice([-1, 1])) if kind is Herniation.MIGRATION else 0
    return DiscLesion(
        nucleus=T.degenerate_nucleus(darkening),
        bulge_mm=bulge,
        hernia_mm=hernia,
        hernia_angle=angle,
        migration=migration,
        sequestered=kind is Herniation.SEQUESTRATION,
        height_factor=height,
    )


@dataclass(frozen=True)
class LevelShape:
    """Constitutional sizes of one level (mm), before any disease."""

    disc_a: float  # lateral semi-axis
    disc_b: float  # antero-posterior semi-axis
    canal_w: float
    canal_ap: float
    trefoil: float
    psoas: float
    vessels: str  # "aorta", "bifurcation" or "iliac"
    kidneys: bool


def level_shape(level: DiscLevel, anatomy: Anatomy) -> LevelShape:
    """Sizes of a level: discs widen and the psoas grows towards the sacrum."""
    k = list(DiscLevel).index(level)  # 0 = L1-L2 ... 4 = L5-S1
    s = anatomy.scale
    return LevelShape(
        disc_a=(21.5 + 1.2 * k) * s,
        disc_b=(15.5 + 0.6 * k) * s,
        canal_w=(23.0 + 0.8 * k) * s * anatomy.canal_scale,
        canal_ap=(17.5 - 0.3 * k) * s * anatomy.canal_scale,
        trefoil=0.05 + 0.05 * k,
        psoas=(6.0 + 3.0 * k) * s,
        vessels=("aorta", "aorta", "aorta", "bifurcation", "iliac")[k],
        kidneys=k == 0,
    )


def _ellipse_radius(a: float, b: float) -> np.ndarray:
    c, s = np.cos(_ANGLES), np.sin(_ANGLES)
    return (a * b) / np.sqrt((b * c) ** 2 + (a * s) ** 2)


def _superellipse(a: float, b: float, n: float) -> np.ndarray:
    """Polar radius of a superellipse: flatter than an ellipse, like a body's back."""
    c, s = np.abs(np.cos(_ANGLES)), np.abs(np.sin(_ANGLES))
    return ((c / a) ** n + (s / b) ** n) ** (-1.0 / n)


def _bump(center: float, width: float) -> np.ndarray:
    d = np.angle(np.exp(1j * (_ANGLES - center)))
    return np.exp(-0.5 * (d / width) ** 2).astype(np.float32)


def disc_outline(
    shape: LevelShape, lesion: DiscLesion, rfs: int, lfs: int, hernia_scale: float
) -> np.ndarray:
    """Polar radius of the disc margin: kidney-shaped, plus bulge, herniation and lateral spurs."""
    radius = _ellipse_radius(shape.disc_a, shape.disc_b)
    concavity = 2.2 * max(0.0, 1.0 - lesion.bulge_mm / 2.0)
    radius = radius - concavity * _bump(_POSTERIOR, 0.35) + lesion.bulge_mm
    radius = radius + lesion.hernia_mm * hernia_scale * _bump(lesion.hernia_angle, 0.26)
    # foraminal stenosis: posterolateral disc-osteophyte spur into the foramen on that side
    right_spur, left_spur = (1.6 * rfs, 1.6 * lfs)
    radius = radius + right_spur * _bump(_POSTERIOR + 0.95, 0.22)
    radius = radius + left_spur * _bump(_POSTERIOR - 0.95, 0.22)
    return radius


@dataclass(frozen=True)
class _Frame:
    """Positions shared by every slice of one level's stack."""

    shape: LevelShape
    a: float
    b: float
    s: float
    canal_w: float
    canal_ap: float
    canal_v: float
    canal_back: float
    facet_scale: float


def _frame(anatomy: Anatomy, level: DiscLevel, grades: LevelGrades) -> _Frame:
    shape = level_shape(level, anatomy)
    canal_f = _CANAL_FACTOR[grades.scs]
    canal_ap = shape.canal_ap * canal_f
    canal_v = shape.disc_b + 1.0 + canal_ap / 2
    return _Frame(
        shape=shape,
        a=shape.disc_a,
        b=shape.disc_b,
        s=anatomy.scale,
        canal_w=shape.canal_w * (0.55 + 0.45 * canal_f),
        canal_ap=canal_ap,
        canal_v=canal_v,
        canal_back=canal_v + canal_ap / 2,
        facet_scale=1.0 + 0.14 * grades.scs,
    )


def paint_axial_background(
    canvas: Canvas,
    sig: Signal,
    anatomy: Anatomy,
    level: DiscLevel,
    grades: LevelGrades,
    rng: np.random.Generator,
) -> None:
    """Paint what all five slices of a level share: body wall, organs, muscles, bony arch."""
    fr = _frame(anatomy, level, grades)
    shape, a, b, s = fr.shape, fr.a, fr.b, fr.s
    canal_w, canal_v, canal_back, facet_scale = (
        fr.canal_w,
        fr.canal_v,
        fr.canal_back,
        fr.facet_scale,
    )

    # --- body wall, subcutaneous fat, abdomen ---
    back = canal_back + 42 * s + anatomy.fat_mm
    body_rv, body_ru = 120 * s, 165 * s
    body_v = back - body_rv
    canvas.polar(0, body_v, _superellipse(body_ru + 2, body_rv + 2, 2.6), sig(T.SKIN))
    canvas.polar(0, body_v, _superellipse(body_ru, body_rv, 2.6), sig(T.FAT))
    fat = anatomy.fat_mm * 0.7
    wall = _superellipse(body_ru - fat, body_rv - fat, 2.6)
    canvas.polar(0, body_v, wall, sig(T.MUSCLE))
    canvas.polar(0, body_v, wall - 7 * s, sig(T.BOWEL) * 0.6 + sig(T.FAT) * 0.1)
    for _ in range(10):  # bowel loops: fluid-bright and gas-dark spots
        cu, cv = rng.uniform(-100, 100) * s, -b - rng.uniform(35, 110) * s
        gas = rng.random() < 0.3
        value = sig(T.FLOW_VOID) * 2 if gas else sig(T.CSF) * rng.uniform(0.3, 0.5)
        canvas.ellipse(
            cu, cv, rng.uniform(4, 10), rng.uniform(3, 7), value, rng.uniform(0, 3), opacity=0.8
        )
    canvas.ellipse(0, 4 * s, a + 42 * s, b + 26 * s, sig(T.FAT) * 0.85)  # retroperitoneum
    if shape.kidneys:
        for side in (-1, 1):
            canvas.ellipse(side * 70 * s, 6 * s, 20 * s, 30 * s, sig(T.KIDNEY), side * 0.5)
            canvas.ellipse(side * 66 * s, 6 * s, 8 * s, 14 * s, sig(T.FAT) * 0.8, side * 0.5)

    # --- muscles ---
    muscle = sig(T.MUSCLE) * (1 - anatomy.muscle_fat) + sig(T.FAT) * anatomy.muscle_fat * 0.6
    for side in (-1, 1):
        canvas.ellipse(
            side * (a + 7 * s + shape.psoas * 0.8),
            -1,
            shape.psoas,
            shape.psoas * 1.2,
            sig(T.MUSCLE),
            side * -0.3,
        )
        canvas.ellipse(side * (a + 32 * s), b + 14 * s, 13 * s, 7 * s, sig(T.MUSCLE), side * 0.4)
        canvas.ellipse(side * 25 * s, canal_back + 20 * s, 23 * s, 20 * s, muscle, side * 0.12)
        for _ in range(int(2 + 6 * anatomy.muscle_fat)):  # fatty streaks
            canvas.ellipse(
                side * rng.uniform(12, 40) * s,
                canal_back + rng.uniform(8, 34) * s,
                rng.uniform(3, 7),
                rng.uniform(0.5, 1.1),
                sig(T.FAT) * 0.8,
                rng.uniform(-0.5, 0.5),
                opacity=0.7,
            )

    # --- great vessels ---
    void = sig(T.FLOW_VOID)
    if shape.vessels == "aorta":
        canvas.ellipse(11 * s, -b - 9 * s, 9.5 * s, 9.5 * s, void)
        canvas.ellipse(-17 * s, -b - 6 * s, 11 * s, 6.5 * s, void * 3)
    elif shape.vessels == "bifurcation":
        for side in (-1, 1):
            canvas.ellipse(side * 10 * s, -b - 9 * s, 6 * s, 6 * s, void)
        canvas.ellipse(-5 * s, -b - 2 * s, 12 * s, 5 * s, void * 3)
    else:
        for side in (-1, 1):
            canvas.ellipse(side * (a + 4 * s), -b - 2 * s, 5.5 * s, 5.5 * s, void)
            canvas.ellipse(side * (a - 4 * s), -b + 2 * s, 6 * s, 4.5 * s, void * 3)

    # --- posterior arch: laminae, spinous process, facet joints ---
    for side in (-1, 1):
        lu, lv = side * (canal_w * 0.32 + 1.5), canal_back + 1.8 * s
        canvas.rounded_rect(lu, lv, canal_w * 0.36 + 2, 3.0 * s, 2.5, sig(T.CORTEX), -side * 0.5)
        canvas.rounded_rect(lu, lv, canal_w * 0.36, 1.6 * s, 1.5, sig(T.MARROW), -side * 0.5)
    canvas.rounded_rect(0, canal_back + 18 * s, 3.6 * s, 15 * s, 3, sig(T.CORTEX))
    canvas.rounded_rect(0, canal_back + 18 * s, 2.2 * s, 13.5 * s, 2, sig(T.MARROW))
    for side, grade in ((-1, grades.rfs), (1, grades.lfs)):
        fs = facet_scale + 0.08 * grade
        fu, fv = side * (canal_w / 2 + 7.5 * s), canal_v + 2.5 * s
        for du, dv in ((1.6, -1.6), (-1.4, 2.4)):  # superior (lateral) / inferior (medial)
            cu, cv = fu + side * du * fs, fv + dv * fs
            canvas.ellipse(cu, cv, 6.2 * fs * s, 4.4 * fs * s, sig(T.CORTEX), side * 1.1)
            canvas.ellipse(cu, cv, 5.0 * fs * s, 3.2 * fs * s, sig(T.MARROW), side * 1.1)
        canvas.ellipse(fu, fv + 0.3, 5.5 * fs * s, 0.55, sig(T.CARTILAGE), side * 1.1)


def paint_axial_slice(
    canvas: Canvas,
    sig: Signal,
    anatomy: Anatomy,
    level: DiscLevel,
    grades: LevelGrades,
    lesion: DiscLesion,
    offset: int,
    rng: np.random.Generator,
) -> tuple[float, float, float, float] | None:
    """Paint, over the level's background, slice `offset` (-2..2) from the mid-disc plane.

    Returns the mm box (u0, v0, u1, v1) of the herniation or bulge on this slice, if any, so that
    explanations can be scored against where the lesion really is.
    """
    fr = _frame(anatomy, level, grades)
    shape, a, b, s = fr.shape, fr.a, fr.b, fr.s
    canal_w, canal_ap, canal_v, canal_back = fr.canal_w, fr.canal_ap, fr.canal_v, fr.canal_back
    edge = abs(offset)

    # --- neural foramina (disc level and just above it) ---
    if offset >= -1:
        for side, grade in ((-1, grades.rfs), (1, grades.lfs)):
            f = _FORAMEN_FACTOR[grade] * (1.0 if offset <= 0 else 0.8)
            cu, cv = side * (canal_w / 2 + 6.0 * s), b + 1.5 * s
            canvas.ellipse(
                cu, cv, 4.5 * s * (0.45 + 0.55 * f), 6.5 * s * f + 0.8, sig(T.FAT), side * 0.5
            )
            root_shift = 1.5 * (1 - f)
            canvas.ellipse(cu + side * 0.5, cv - root_shift, 2.0 * s, 2.0 * s, sig(T.NERVE))

    # --- spinal canal: epidural fat, thecal sac, cauda equina, ligamentum flavum ---
    canal_r = _ellipse_radius(canal_w / 2, canal_ap / 2)
    canal_r = canal_r * (1 + shape.trefoil * np.cos(3 * (_ANGLES - _POSTERIOR)))
    canvas.polar(0, canal_v, canal_r, sig(T.FAT))
    sac_f = _SAC_FACTOR[grades.scs]
    sac_w = shape.canal_w * 0.8 * (0.45 + 0.55 * sac_f)
    sac_ap = shape.canal_ap * 0.8 * sac_f
    sac_v = canal_v - (canal_ap - sac_ap) * 0.1
    canvas.ellipse(0, sac_v, sac_w / 2, max(sac_ap / 2, 0.7), sig(T.CSF))
    crowd = 0.3 + 0.7 * sac_f
    for _ in range(int(rng.integers(12, 20))):  # roots layer posteriorly in a supine patient
        ru, rv = rng.uniform(-0.75, 0.75), rng.uniform(0.0, 0.85)
        canvas.ellipse(
            ru * sac_w / 2 * crowd,
            sac_v + rv * sac_ap / 2 * 0.8,
            0.75 * s,
            0.75 * s,
            sig(T.NERVE),
            opacity=0.85,
        )
    lf = _LIGAMENT_MM[grades.scs]
    for side in (-1, 1):
        canvas.rounded_rect(
            side * (canal_w * 0.27 + lf * 0.15),
            canal_back - lf * 0.35,
            canal_w * 0.26 + 1.0,
            lf / 2,
            1.0,
            sig(T.LIGAMENT),
            -side * 0.6,
        )

    # --- vertebral body or disc ---
    lesion_box = None
    if edge == 2:  # through the bony end of a vertebral body, with pedicles
        for side in (-1, 1):
            pu, pv = side * (canal_w / 2 + 3.5 * s), b + 4 * s
            canvas.rounded_rect(pu, pv, 4.5 * s, 7.5 * s, 2, sig(T.CORTEX), -side * 0.3)
            canvas.rounded_rect(pu, pv, 3.0 * s, 6.0 * s, 1.5, sig(T.MARROW), -side * 0.3)
        body = _ellipse_radius(a - 1.0, b - 0.5) - 1.8 * _bump(_POSTERIOR, 0.35)
        canvas.polar(0, 0, body, sig(T.CORTEX))
        canvas.polar(0, 0, body - 1.6, sig(T.MARROW))
        canvas.ellipse(0, b * 0.45, 2.6, 1.6, sig(T.CSF) * 0.5)  # basivertebral vein
    elif edge == 1:  # endplate: marrow behind a thin rim of disc
        body = _ellipse_radius(a - 0.5, b) - 1.8 * _bump(_POSTERIOR, 0.35)
        canvas.polar(0, 0, body, sig(T.CORTEX))
        canvas.polar(0, 0, body - 1.2, sig(T.MARROW) * 0.92 + sig(T.ANNULUS) * 0.08)
    hernia_scale = 1.0 if edge == 0 else 0.0
    if lesion.migration and np.sign(offset) == lesion.migration:
        hernia_scale = 0.85 if edge == 1 else 0.6
    draw_disc = edge == 0 or hernia_scale > 0 or (edge == 1 and lesion.bulge_mm > 0)
    if draw_disc:
        outline = disc_outline(shape, lesion, grades.rfs, grades.lfs, hernia_scale)
        if edge == 0:
            canvas.polar(0, 0, outline, sig(T.ANNULUS))
            nucleus = _ellipse_radius(a * 0.8, b * 0.74)
            canvas.polar(0, 1.0, nucleus, sig(lesion.nucleus), opacity=0.95)
        else:  # only the protruding disc material shows beyond the vertebral rim
            canvas.polar(0, 0, outline, sig(T.ANNULUS), opacity=0.9)
            body = _ellipse_radius(a - 0.5, b) - 1.8 * _bump(_POSTERIOR, 0.35)
            canvas.polar(0, 0, body - 1.2, sig(T.MARROW) * 0.92 + sig(T.ANNULUS) * 0.08)
        if lesion.hernia_mm > 0 and hernia_scale > 0:
            ang = lesion.hernia_angle
            tip = float(_ellipse_radius(a, b)[int(ang / (2 * np.pi) * 256) % 256])
            tip += lesion.hernia_mm * hernia_scale
            mid = (tip + b * 0.45) / 2
            cu, cv = mid * math.cos(ang), 1.0 + mid * math.sin(ang)
            canvas.ellipse(cu, cv, (tip - b * 0.45) / 2, 4.8 * s, sig(lesion.nucleus) * 0.9, ang)
            lesion_box = _box_around(cu, cv, (tip - b * 0.45) / 2 + 2, 5.0)
        elif lesion.bulge_mm > 0 and edge == 0:
            lesion_box = (-a - lesion.bulge_mm, b - 6, a + lesion.bulge_mm, b + lesion.bulge_mm)
    if lesion.sequestered and offset in (0, lesion_side_offset(lesion)):
        size = 1.0 if offset == 0 else 1.2
        side = 1 if math.cos(lesion.hernia_angle) >= 0 else -1
        cu, cv = side * 3.5 * s, b + 2.6 + 3.0 * size
        canvas.ellipse(cu, cv, 3.6 * size * s, 2.6 * size * s, sig(lesion.nucleus) * 0.85, 0.3)
        lesion_box = _box_around(cu, cv, 5.5, 4.5)
    return lesion_box


def lesion_side_offset(lesion: DiscLesion) -> int:
    """The neighbouring slice a sequestered fragment drifts to (cranial by default)."""
    return 1 if lesion.hernia_angle >= _POSTERIOR else -1


def _box_around(cu: float, cv: float, hu: float, hv: float) -> tuple[float, float, float, float]:
    return (cu - hu, cv - hv, cu + hu, cv + hv)
