"""Sagittal grading steps: which discs are graded, boxes sized from the disc spacing, and one
input failing while the others go on."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.sagittal_models import ToyGrader, TrueDisc, TruthFinder

from lumbar.inference.inputs import SagittalImage
from lumbar.inference.sagittal import (
    BOX_HEIGHT,
    BOX_WIDTH,
    NoConfidentDiscs,
    confident,
    disc_boxes,
    grade_slices,
)

LEVELS = ["L2-L3", "L3-L4", "L4-L5"]


def _size(
    box: tuple[tuple[float, float], ...], spacing: tuple[float, float]
) -> tuple[float, float]:
    """(width, height) of a box in mm."""
    corners = np.array(box) * np.array([spacing[1], spacing[0]])
    return (
        float(np.linalg.norm(corners[1] - corners[0])),
        float(np.linalg.norm(corners[3] - corners[0])),
    )


def test_boxes_are_the_same_anatomy_at_any_pixel_size() -> None:
    # discs 35 mm apart down a straight spine, at 0.5 mm and at 1.0 mm pixels
    fine = [(lv, 100.0, 100.0 + 70.0 * k) for k, lv in enumerate(LEVELS)]
    coarse = [(lv, 50.0, 50.0 + 35.0 * k) for k, lv in enumerate(LEVELS)]
    for discs, spacing in ((fine, (0.5, 0.5)), (coarse, (1.0, 1.0))):
        for box in disc_boxes(discs, spacing):
            width, height = _size(box, spacing)
            assert width == pytest.approx(BOX_WIDTH * 35.0) and height == pytest.approx(
                BOX_HEIGHT * 35.0
            )
    tilted = [(lv, 100.0 + 20.0 * k, 100.0 + 30.0 * k) for k, lv in enumerate(LEVELS)]
    box = np.array(disc_boxes(tilted, None)[1])
    across = box[1] - box[0]
    assert abs(float(across @ np.array([20.0, 30.0]))) < 1e-6  # turned with the spine


def test_only_confident_named_discs_are_graded() -> None:
    found = [
        TrueDisc(None, 10, 10, 0.99),
        TrueDisc("L4-L5", 10, 50, 0.3),
        TrueDisc("L5-S1", 10, 80, 0.8),
        TrueDisc("L5-S1", 12, 82, 0.6),
    ]
    kept = confident(found)
    assert [(d.level, d.confidence) for d in kept] == [("L5-S1", 0.8)]


def test_one_failing_slice_does_not_stop_the_others() -> None:
    rng = np.random.default_rng(0)
    spine = SagittalImage(rng.uniform(0, 255, (200, 160)).astype(np.float32), (0.8, 0.8))
    blank = SagittalImage(np.zeros((200, 160), np.float32), None)
    finder = TruthFinder()
    finder.add(
        spine.pixels, [TrueDisc(lv, 80.0, 60.0 + 40 * k, 0.9) for k, lv in enumerate(LEVELS)]
    )
    results = grade_slices(finder, ToyGrader(), [[blank], [spine]], gradcam=False)
    assert finder.calls == [2]
    assert isinstance(results[0], NoConfidentDiscs) and "no discs found" in str(results[0])
    assert [d.level for d in results[1].discs] == LEVELS
    assert all(d.heatmap is None and 0 <= d.p_abnormal <= 1 for d in results[1].discs)
