"""Axial brain MRI phantoms with and without tumours: the paper's labelled source domain.

The paper's Dataset A groups public brain-tumour collections (glioma, meningioma, pituitary,
no tumour) into normal and abnormal. These phantoms reproduce that layout on the same imaging
chain as the lumbar studies (tissue relaxation, coil bias, Rician noise), so Procedure 2 can run
end to end without downloading anything. Coordinates: millimetres, u to the patient's left,
v posterior, origin at the centre of the head.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from lumbar.synth import tissue as T
from lumbar.synth.canvas import Canvas

Signal = Callable[[T.Tissue], float]

GREY_MATTER = T.Tissue(pd=0.82, t1=1100, t2=95)
WHITE_MATTER = T.Tissue(pd=0.70, t1=650, t2=75)
TUMOUR = T.Tissue(pd=0.85, t1=1350, t2=125)
EDEMA = T.Tissue(pd=0.88, t1=1250, t2=160)
NECROSIS = T.Tissue(pd=0.95, t1=2500, t2=600)
MENINGIOMA = T.Tissue(pd=0.80, t1=1000, t2=90)

TUMOUR_CLASSES = ("glioma", "meningioma", "pituitary")
NORMAL_CLASS = "no_tumor"
SOURCE_CLASSES = (*TUMOUR_CLASSES, NORMAL_CLASS)


def paint_brain(
    canvas: Canvas, sig: Signal, kind: str, rng: np.random.Generator, *, height: float
) -> None:
    """Paint one axial brain slice of class `kind`; `height` 0 (skull base) .. 1 (vertex)."""
    if kind not in SOURCE_CLASSES:
        raise ValueError(f"unknown brain phantom class {kind!r}; expected one of {SOURCE_CLASSES}")
    size = 1.0 - 0.35 * max(0.0, height - 0.6) / 0.4  # the head narrows towards the vertex
    ru, rv = 70 * size * rng.uniform(0.92, 1.05), 88 * size * rng.uniform(0.92, 1.05)
    canvas.ellipse(0, 0, ru + 7, rv + 7, sig(T.SKIN))
    canvas.ellipse(0, 0, ru + 5.5, rv + 5.5, sig(T.FAT))  # scalp
    canvas.ellipse(0, 0, ru + 3.5, rv + 3.5, sig(T.CORTEX))  # outer table
    canvas.ellipse(0, 0, ru + 2.3, rv + 2.3, sig(T.MARROW) * 0.9)  # diploe
    canvas.ellipse(0, 0, ru + 1.2, rv + 1.2, sig(T.CORTEX))  # inner table
    canvas.ellipse(0, 0, ru, rv, sig(T.CSF))  # subarachnoid space
    canvas.ellipse(0, 0, ru - 2.5, rv - 2.5, sig(GREY_MATTER))
    canvas.ellipse(0, 0, ru - 9, rv - 10, sig(WHITE_MATTER))
    # gyri: grey matter folding into the white matter, CSF in the sulci
    for _ in range(int(rng.integers(26, 40))):
        angle = rng.uniform(0, 2 * math.pi)
        reach = rng.uniform(0.78, 0.93)
        cu, cv = (ru - 4) * reach * math.cos(angle), (rv - 4) * reach * math.sin(angle)
        canvas.ellipse(cu, cv, rng.uniform(3, 6), rng.uniform(1.2, 2.2), sig(GREY_MATTER), angle)
        canvas.ellipse(cu * 1.04, cv * 1.04, rng.uniform(2, 4), 0.6, sig(T.CSF) * 0.8, angle)
    canvas.rounded_rect(0, 0, 1.2, rv - 3, 1, sig(T.CSF) * 0.9)  # interhemispheric fissure
    if 0.3 < height < 0.8:  # lateral ventricles and the basal ganglia
        spread = rng.uniform(0.8, 1.3)
        for side in (-1, 1):
            canvas.ellipse(side * 7 * spread, -8, 4 * spread, 16, sig(T.CSF), side * 0.25)
            canvas.ellipse(side * 22, 2, 8, 12, sig(GREY_MATTER) * 0.95, side * -0.2)
    if height < 0.3:  # skull base: orbits forward, cerebellum behind
        for side in (-1, 1):
            canvas.ellipse(side * 28, -rv + 8, 13, 11, sig(T.FAT))
            canvas.ellipse(side * 28, -rv + 8, 6, 6, sig(T.CSF) * 0.7)
        canvas.ellipse(0, rv * 0.55, ru * 0.65, rv * 0.35, sig(GREY_MATTER) * 0.97)
    if kind == "glioma":
        cu, cv = rng.uniform(-0.5, 0.5) * ru, rng.uniform(-0.5, 0.5) * rv
        r = rng.uniform(9, 22)
        canvas.ellipse(cu, cv, r * 1.8, r * 1.6, sig(EDEMA), rng.uniform(0, 3), opacity=0.9)
        canvas.ellipse(cu, cv, r, r * rng.uniform(0.7, 1.0), sig(TUMOUR), rng.uniform(0, 3))
        if rng.random() < 0.6:  # necrotic core of a high-grade glioma
            canvas.ellipse(cu, cv, r * 0.45, r * 0.4, sig(NECROSIS), rng.uniform(0, 3))
    elif kind == "meningioma":  # extra-axial, broad-based on the dura
        angle = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(8, 18)
        cu, cv = (ru - r * 0.6) * math.cos(angle), (rv - r * 0.6) * math.sin(angle)
        canvas.ellipse(cu, cv, r * 1.4, r * 1.4, sig(EDEMA), opacity=0.5)
        canvas.ellipse(cu, cv, r, r * 0.85, sig(MENINGIOMA), angle)
    elif kind == "pituitary":  # sellar mass in the midline, in front of the brainstem
        r = rng.uniform(6, 14)
        canvas.ellipse(0, -rv * 0.18, r, r * 0.85, sig(TUMOUR) * 1.05)
