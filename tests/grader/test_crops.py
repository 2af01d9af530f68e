"""Disc crops: sized from the disc spacing (the same anatomy at any pixel spacing), turned to
the spine's axis, and bad discs refused."""

from __future__ import annotations

import numpy as np
import pytest

from lumbar.grader.crops import DEFAULT_DISC_SPACING_MM, crop_discs, disc_geometry

LEVELS = ("L2-L3", "L3-L4", "L4-L5", "L5-S1")


def _spine(pixel_mm: float, gap_mm: float = 30.0, tilt: float = 0.0) -> tuple[np.ndarray, list]:
    """A phantom slice: dark discs (8 mm tall, 40 mm wide) every `gap_mm` along a straight
    spine tilted by `tilt` radians, drawn at `pixel_mm` mm per pixel; returns the discs too."""
    size = round(200 / pixel_mm)
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) * pixel_mm  # pixel centres in mm
    image = np.full((size, size), 200.0)
    axis = np.array([np.sin(tilt), np.cos(tilt)])  # down the spine
    across = np.array([axis[1], -axis[0]])
    discs = []
    for k, level in enumerate(LEVELS):
        centre = np.array([100.0, 100.0]) + (k - 1.5) * gap_mm * axis
        along = (xx - centre[0]) * axis[0] + (yy - centre[1]) * axis[1]
        side = (xx - centre[0]) * across[0] + (yy - centre[1]) * across[1]
        image[(np.abs(along) < 4) & (np.abs(side) < 20)] = 40.0
        discs.append((level, centre[0] / pixel_mm - 0.5, centre[1] / pixel_mm - 0.5))
    return image, discs


def _crops(pixel_mm: float, **kwargs: float) -> np.ndarray:
    image, discs = _spine(pixel_mm, **kwargs)
    spacing = (pixel_mm, pixel_mm)
    return crop_discs(image, disc_geometry(discs, spacing), spacing, size=48, scale=1.5)


def test_crops_scale_with_pixel_spacing() -> None:
    fine, coarse = _crops(0.5), _crops(1.0)
    assert fine.shape == coarse.shape == (4, 48, 48)
    assert np.abs(fine - coarse).mean() < 8  # same anatomy, resampled (values 40..200)
    # the disc fills the same rows of the crop whatever the spacing: 8 mm of 45 mm
    dark_rows = (fine[1] < 120).mean(axis=1) > 0.5
    assert 7 <= dark_rows.sum() <= 10 and dark_rows[22:26].all()


def test_crop_side_follows_the_local_disc_spacing() -> None:
    image, discs = _spine(0.5, gap_mm=40.0)
    geometry = disc_geometry(discs, (0.5, 0.5))
    assert [g.spacing_mm for g in geometry] == pytest.approx([40.0] * 4)
    wide = crop_discs(image, geometry, (0.5, 0.5), size=60, scale=1.5)
    near = _crops(0.5)  # 30 mm apart: the disc looks taller in a 1.5 x 30 mm crop
    assert (wide[1] < 120).sum() < (near[1] < 120).sum() * 60**2 / 48**2


def test_crops_are_turned_to_the_spine_axis() -> None:
    straight, tilted = _crops(0.5), _crops(0.5, tilt=0.35)
    assert np.abs(straight - tilted).mean() < 10
    image, discs = _spine(0.5, tilt=0.35)
    axes = crop_discs(image, disc_geometry(discs, (0.5, 0.5)), (0.5, 0.5), size=48, align=False)
    assert np.abs(straight - axes).mean() > 2 * np.abs(straight - tilted).mean()


def test_one_disc_uses_the_typical_spacing_and_bad_discs_fail() -> None:
    (g,) = disc_geometry([("L4-L5", 50.0, 50.0)], (0.8, 0.8))
    assert g.spacing_mm == DEFAULT_DISC_SPACING_MM and g.axis == (0.0, 1.0)
    with pytest.raises(ValueError, match="unknown disc level"):
        disc_geometry([("L9-L10", 1.0, 1.0)], (1.0, 1.0))
    with pytest.raises(ValueError, match="twice"):
        disc_geometry([("L4-L5", 1.0, 1.0), ("L4-L5", 5.0, 9.0)], (1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        disc_geometry([("L4-L5", 1.0, 1.0)], (0.0, 1.0))
    # the order given is kept, whatever the order along the spine
    _, discs = _spine(1.0)
    shuffled = disc_geometry(discs[::-1], (1.0, 1.0))
    assert [g.centre_mm for g in shuffled] == [
        g.centre_mm for g in disc_geometry(discs, (1.0, 1.0))
    ][::-1]
