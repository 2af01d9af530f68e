"""The paper's augmentation: Keras brightness semantics, flips, counter-based seeding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from lumbar.data.augment import (
    Augmentation,
    RandomBrightness,
    RandomFlip,
    counter_uniform,
    parse_augmentation,
)


def test_counter_uniform_is_a_pure_function() -> None:
    idx = np.arange(1000)
    a = counter_uniform(7, np.zeros(1000, int), idx, 1)
    assert np.array_equal(a, counter_uniform(7, np.zeros(1000, int), idx, 1))
    assert np.array_equal(a[500:], counter_uniform(7, np.zeros(500, int), idx[500:], 1))
    assert not np.array_equal(a, counter_uniform(8, np.zeros(1000, int), idx, 1))
    assert not np.array_equal(a, counter_uniform(7, np.ones(1000, int), idx, 1))
    assert not np.array_equal(a, counter_uniform(7, np.zeros(1000, int), idx, 2))
    assert a.min() >= 0 and a.max() < 1
    assert abs(a.mean() - 0.5) < 0.03  # roughly uniform


def test_brightness_factors_span_the_papers_range() -> None:
    u = counter_uniform(0, np.zeros(5000, int), np.arange(5000), 1)
    f = RandomBrightness(0.1, 0.7).factors(u)
    assert f.min() >= 0.1 and f.max() <= 0.7
    assert f.min() < 0.12 and f.max() > 0.68


def test_brightness_matches_pil_enhance_like_keras() -> None:
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for factor in (0.1, 0.45, 0.7, 1.3):
        pil = np.asarray(ImageEnhance.Brightness(Image.fromarray(image)).enhance(factor))
        ours = np.minimum(image.astype(np.float64) * factor, 255)
        assert np.abs(pil - ours).max() <= 1.0  # PIL rounds to uint8


def test_flips() -> None:
    batch = np.arange(2 * 1 * 2 * 3, dtype=np.uint8).reshape(2, 1, 2, 3)
    original = batch.copy()
    RandomFlip("horizontal").apply(batch, np.array([True, False]))
    assert np.array_equal(batch[0], original[0][..., ::-1])
    assert np.array_equal(batch[1], original[1])
    RandomFlip("vertical").apply(batch, np.array([False, True]))
    assert np.array_equal(batch[1], original[1][:, ::-1])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RandomBrightness(0.7, 0.1), "low <= high"),
        (lambda: RandomBrightness(-0.1, 0.5), "brightness low must be a finite number >= 0"),
        (lambda: RandomFlip("diagonal"), "flip axis must be"),
        (lambda: RandomFlip("vertical", p=1.5), r"flip probability must be in \[0, 1\]"),
        (lambda: Augmentation(brightness=0.5), "brightness must be a"),
        (lambda: parse_augmentation("rotate"), "unknown augmentation 'rotate'"),
    ],
)
def test_arguments_are_validated(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_switchable_parts() -> None:
    assert parse_augmentation("none") is None
    flips = parse_augmentation("hflip,vflip")
    assert flips is not None and flips.brightness is None
    draw = flips.draw(0, np.zeros(400, int), np.arange(400))
    assert draw.brightness is None and 0.35 < draw.hflip.mean() < 0.65
    paper = Augmentation.paper()
    assert (paper.brightness.low, paper.brightness.high) == (0.1, 0.7)
    assert repr(paper).startswith("Augmentation(RandomBrightness(low=0.1, high=0.7)")
    only = parse_augmentation("brightness=0.5:1.5")
    assert only is not None and only.hflip is None and only.max_brightness == 1.5
