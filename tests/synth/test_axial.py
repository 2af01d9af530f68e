"""Each Table 3 grade must change the axial image where a radiologist looks (noise-free renders)."""

import numpy as np
import pytest

from lumbar.grading import DiscLevel
from lumbar.synth import tissue as T
from lumbar.synth.axial import (
    disc_lesion,
    level_shape,
    paint_axial_background,
    paint_axial_slice,
)
from lumbar.synth.canvas import Canvas, Grid
from lumbar.synth.cohort import LevelGrades, make_patient
from lumbar.synth.imaging import Signals

LEVEL = DiscLevel.L4_L5
GRID = Grid((320, 320), 0.5, (0.0, 16.0))


@pytest.fixture(scope="module")
def anatomy():
    from dataclasses import replace

    return replace(make_patient(0, 0).anatomy, rotation=0.0)


def render(anatomy, grades: LevelGrades, offset: int = 0, lesion_seed: int = 3) -> np.ndarray:
    sig = Signals(T.Sequence(te=anatomy.te_t2, tr=anatomy.tr_t2))
    canvas = Canvas(GRID)
    rng = np.random.default_rng(0)
    paint_axial_background(canvas, sig, anatomy, LEVEL, grades, rng)
    lesion = disc_lesion(grades, anatomy, np.random.default_rng(lesion_seed))
    paint_axial_slice(canvas, sig, anatomy, LEVEL, grades, lesion, offset, rng)
    return canvas.image


def region(image: np.ndarray, u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
    r0, r1, c0, c1 = GRID.box(u0, v0, u1, v1)
    return image[r0:r1, c0:c1]


def csf_pixels(image, anatomy) -> int:
    shape = level_shape(LEVEL, anatomy)
    canal = region(
        image,
        -shape.canal_w / 2,
        shape.disc_b,
        shape.canal_w / 2,
        shape.disc_b + shape.canal_ap + 2,
    )
    sig = Signals(T.Sequence(te=anatomy.te_t2, tr=anatomy.tr_t2))
    return int((canal > 0.8 * sig(T.CSF)).sum())


def test_degeneration_darkens_the_nucleus(anatomy):
    normal = render(anatomy, LevelGrades(0, 0, 0, 0, 0))
    degenerated = render(anatomy, LevelGrades(1, 0, 0, 0, 0))
    centre = (-6, -4, 6, 4)
    assert region(degenerated, *centre).mean() < 0.6 * region(normal, *centre).mean()


def test_bulge_extends_the_disc_all_round(anatomy):
    normal = render(anatomy, LevelGrades(0, 0, 0, 0, 0))
    bulge = render(anatomy, LevelGrades(2, 0, 0, 0, 0))
    shape = level_shape(LEVEL, anatomy)
    for box in (
        (shape.disc_a - 0.5, -3, shape.disc_a + 2.5, 3),  # left margin
        (-shape.disc_a - 2.5, -3, -shape.disc_a + 0.5, 3),  # right margin
        (-3, -shape.disc_b - 2.5, 3, -shape.disc_b + 0.5),
    ):  # anterior margin
        assert not np.allclose(region(normal, *box), region(bulge, *box), atol=0.02), box


def test_herniation_is_focal_and_narrows_the_sac(anatomy):
    normal = render(anatomy, LevelGrades(0, 0, 0, 0, 0))
    before = csf_pixels(normal, anatomy)
    # central or paracentral: each indents the sac, central ones most
    ratios = [
        csf_pixels(render(anatomy, LevelGrades(3, 1, 0, 0, 0), lesion_seed=seed), anatomy) / before
        for seed in range(6)
    ]
    assert max(ratios) < 0.97 and np.mean(ratios) < 0.9, ratios
    hernia = render(anatomy, LevelGrades(3, 1, 0, 0, 0))
    shape = level_shape(LEVEL, anatomy)
    lateral = (shape.disc_a - 0.5, -3, shape.disc_a + 2.5, 3)  # far from the protrusion
    assert np.allclose(region(normal, *lateral), region(hernia, *lateral), atol=0.05)


def test_migration_reaches_the_neighbouring_slices(anatomy):
    plain = [render(anatomy, LevelGrades(3, 1, 0, 0, 0), off) for off in (-1, 1)]
    migrated = [render(anatomy, LevelGrades(3, 2, 0, 0, 0), off) for off in (-1, 1)]
    differs = [not np.allclose(p, m, atol=0.02) for p, m in zip(plain, migrated, strict=True)]
    assert any(differs)


def test_canal_stenosis_grades_shrink_the_csf(anatomy):
    counts = [csf_pixels(render(anatomy, LevelGrades(0, 0, g, 0, 0)), anatomy) for g in range(4)]
    assert counts[0] > counts[1] > counts[2] > counts[3]
    assert counts[3] < 0.25 * counts[0]


def test_foraminal_stenosis_is_on_the_graded_side(anatomy):
    shape = level_shape(LEVEL, anatomy)
    fat = Signals(T.Sequence(te=anatomy.te_t2, tr=anatomy.tr_t2))(T.FAT)

    def foramen_fat(image, side):  # patient right is image left (u < 0)
        u = side * (shape.canal_w / 2 + 6)
        return int(
            (region(image, u - 6, shape.disc_b - 8, u + 6, shape.disc_b + 8) > 0.85 * fat).sum()
        )

    normal = render(anatomy, LevelGrades(0, 0, 0, 0, 0))
    right = render(anatomy, LevelGrades(0, 0, 0, 3, 0))
    assert foramen_fat(right, -1) < 0.5 * foramen_fat(normal, -1)
    assert foramen_fat(right, 1) == pytest.approx(foramen_fat(normal, 1), rel=0.05)
