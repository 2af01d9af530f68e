"""The bundled localiser: phantom discs, real SPIDER slices, images without a spine."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.shared_data import REAL_MRI, SPIDER

from lumbar.errors import UserError
from lumbar.localize import Localizer, bundled_weights, load_localizer
from lumbar.localize.data import phantom_disc_pixels
from lumbar.localize.evaluate import local_half_spacing
from lumbar.synth.cohort import make_patient
from lumbar.synth.imaging import texture_bank
from lumbar.synth.series import StudyBuilder
from lumbar.synth.sets import brain_slice

# real axial slices of lumbar-mri-unlabelled (picked by eye; benchmarks/localize.py has all)
REAL_AXIAL = ("00746a9b727e", "08cb840271d4", "3a26d4a20a18", "80d98ac2cf94", "f9ed1be7f2d9")
# SPIDER slices of every sequence (T1, T2, T2-SPACE)
SPIDER_SLICES = ("images/104_t2.png", "images/106_t1.png")


@pytest.fixture(scope="module")
def localizer() -> Localizer:
    return load_localizer()


def test_the_bundled_weights_ship_in_the_package_and_are_small() -> None:
    path = bundled_weights()
    assert path.is_file()
    assert path.stat().st_size < 10 * 2**20
    assert (path.parent / "MODEL_CARD.md").is_file()


def test_phantom_discs_are_found_and_named(localizer: Localizer) -> None:
    images, truths = [], []
    for index in range(3):
        pixels, centres, _ = phantom_disc_pixels(
            StudyBuilder(make_patient(31, index)), t1=index == 1
        )
        images.append(pixels)
        truths.append(centres)
    for discs, truth in zip(localizer.find(images), truths, strict=True):
        named = {d.level: d for d in discs if d.level is not None}
        points = np.array(list(truth.values()))
        tolerance = dict(zip(truth, local_half_spacing(points), strict=True))
        right = [
            level
            for level, (x, y) in truth.items()
            if level in named
            and np.hypot(named[level].x - x, named[level].y - y) <= tolerance[level]
        ]
        assert len(right) >= 4, (right, discs)


@pytest.mark.skipif(not SPIDER.is_dir(), reason=f"shared data absent: {SPIDER}")
def test_real_spider_slices(localizer: Localizer) -> None:
    from lumbar.data.spider import read_spider
    from lumbar.localize.data import spider_sample
    from lumbar.localize.evaluate import score_slice

    slices = [s for s in read_spider(SPIDER) if f"images/{s.image.name}" in SPIDER_SLICES]
    samples = [spider_sample(s) for s in slices]
    found = localizer.find([s.image for s in samples], [s.spacing_mm for s in samples])
    results = [r for s, d in zip(samples, found, strict=True) for r in score_slice(s, d)]
    # these slices were in the training set of the bundled model: a check that it loads and
    # decodes right, not a measure of accuracy (benchmarks/localize.py has the CV)
    assert sum(r.right for r in results) >= len(results) - 1


def test_images_without_a_spine_give_no_confident_disc(localizer: Localizer) -> None:
    rng = np.random.default_rng(5)
    bank = texture_bank(600, rng)
    images = [brain_slice(rng, bank) for _ in range(3)]
    images += [np.zeros((256, 256)), np.full((300, 200), 90.0), rng.normal(100, 30, (256, 256))]
    if REAL_MRI.is_dir():
        from lumbar.data.imageio import read_uint8

        images += [read_uint8(REAL_MRI / f"mri_{name}.png") for name in REAL_AXIAL]
    for discs in localizer.find(images):
        assert all(d.confidence < 0.5 for d in discs), discs


def test_find_takes_any_value_range_and_rgb(localizer: Localizer) -> None:
    pixels, _, spacing = phantom_disc_pixels(StudyBuilder(make_patient(31, 0)))
    rgb = np.repeat((pixels / pixels.max() * 255).astype(np.uint8)[..., None], 3, axis=2)
    a, b = localizer.find([pixels, rgb], [(spacing, spacing), None])
    assert [d.level for d in a] == [d.level for d in b]
    assert all(abs(p.y - q.y) < 2.0 for p, q in zip(a, b, strict=True))


def test_a_missing_run_folder_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(UserError, match="no localiser weights"):
        load_localizer(tmp_path)
    bad = tmp_path / "localizer.safetensors"
    bad.write_bytes(b"not weights")
    with pytest.raises(UserError, match="cannot read localiser weights"):
        load_localizer(tmp_path)
