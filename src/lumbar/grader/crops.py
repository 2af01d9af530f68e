"""Disc crops for the sagittal grader, sized and turned from the discs around each one.

A crop is a square centred on the disc, its side `scale` times the local disc spacing (the mean
distance to the neighbouring discs found on the same slice, in millimetres), turned so that the
spine's local axis (from the disc above to the disc below) runs straight down the crop. So a
crop shows the same anatomy whatever the field of view, the pixel spacing or the lordosis: the
disc in the middle, half of each neighbouring vertebral body above and below (scale 1.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from lumbar.grading import SPINE_LEVELS

__all__ = [
    "DEFAULT_DISC_SPACING_MM",
    "DiscGeometry",
    "crop_discs",
    "disc_geometry",
]

#: Centre-to-centre distance of neighbouring lumbar discs used when a slice shows one disc
#: only: the median of the SPIDER set (35 mm; 5th-95th percentile 27-50 mm).
DEFAULT_DISC_SPACING_MM = 35.0


@dataclass(frozen=True)
class DiscGeometry:
    """Where one disc's crop lies, in millimetres of the slice (x right, y down).

    Attributes:
        centre_mm: the disc centre.
        axis: unit vector of the spine's local axis, pointing down (caudal).
        spacing_mm: the local disc spacing the crop is sized from.
    """

    centre_mm: tuple[float, float]
    axis: tuple[float, float]
    spacing_mm: float


def disc_geometry(
    discs: Sequence[tuple[str, float, float]], spacing_mm: tuple[float, float]
) -> list[DiscGeometry]:
    """The crop geometry of each disc of one slice, in the order given.

    Args:
        discs: (level, x, y) per disc, x and y in pixels of the slice; levels are names of
            `lumbar.grading.SPINE_LEVELS` and order the discs along the spine.
        spacing_mm: (row, column) pixel spacing of the slice.

    Raises:
        ValueError: an unknown level name, the same level twice, or a non-positive spacing.
    """
    row_mm, col_mm = float(spacing_mm[0]), float(spacing_mm[1])
    if not (row_mm > 0 and col_mm > 0):
        raise ValueError(f"pixel spacing must be positive, got {spacing_mm!r}")
    for level, _, _ in discs:
        if level not in SPINE_LEVELS:
            raise ValueError(f"unknown disc level {level!r}")
    if len({level for level, _, _ in discs}) != len(discs):
        raise ValueError("a disc level appears twice on one slice")
    order = sorted(range(len(discs)), key=lambda i: SPINE_LEVELS.index(discs[i][0]))
    centres = np.array([[discs[i][1] * col_mm, discs[i][2] * row_mm] for i in order], float)
    out: list[DiscGeometry | None] = [None] * len(discs)
    for rank, i in enumerate(order):
        above = centres[rank - 1] if rank > 0 else None
        below = centres[rank + 1] if rank + 1 < len(order) else None
        gaps = [np.linalg.norm(centres[rank] - n) for n in (above, below) if n is not None]
        spacing = float(np.mean(gaps)) if gaps else DEFAULT_DISC_SPACING_MM
        upper = above if above is not None else centres[rank]
        lower = below if below is not None else centres[rank]
        direction = lower - upper
        norm = float(np.linalg.norm(direction))
        axis = (0.0, 1.0) if norm < 1e-6 else (direction[0] / norm, direction[1] / norm)
        if spacing < 1e-6:
            spacing = DEFAULT_DISC_SPACING_MM
        out[i] = DiscGeometry(
            (float(centres[rank][0]), float(centres[rank][1])),
            (float(axis[0]), float(axis[1])),
            spacing,
        )
    return [g for g in out if g is not None]


def crop_discs(
    image: np.ndarray,
    geometry: Sequence[DiscGeometry],
    spacing_mm: tuple[float, float],
    *,
    size: int = 224,
    scale: float = 1.5,
    align: bool = True,
    flip: bool = False,
) -> np.ndarray:
    """Bilinear crops of the discs of one slice: (N, size, size) float32, pixel values kept.

    Args:
        image: (H, W) grayscale slice (any numeric type; values are not rescaled).
        geometry: from `disc_geometry` for the same slice and spacing.
        size: side of each crop in pixels.
        scale: crop side in units of the local disc spacing.
        align: turn each crop so the spine's local axis runs straight down (else the crop
            keeps the image's axes).
        flip: mirror the crops left to right (anterior <-> posterior), for augmentation.

    Outside the image the crop is 0 (black, as the background of an MRI slice).
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    if len(geometry) == 0:
        return np.zeros((0, size, size), np.float32)
    height, width = image.shape
    row_mm, col_mm = float(spacing_mm[0]), float(spacing_mm[1])
    # Sample positions at pixel centres of the crop, in [-0.5, 0.5) of its side.
    steps = (torch.arange(size, dtype=torch.float64) + 0.5) / size - 0.5
    v, u = torch.meshgrid(steps, steps, indexing="ij")  # v down the crop, u across
    if flip:
        u = -u
    grids = []
    for g in geometry:
        side = scale * g.spacing_mm
        ay, ax = (g.axis[1], g.axis[0]) if align else (1.0, 0.0)
        # across = axis turned 90 degrees (anterior to the left when the axis points down)
        x_mm = g.centre_mm[0] + side * (u * ay + v * ax)
        y_mm = g.centre_mm[1] + side * (-u * ax + v * ay)
        px, py = x_mm / col_mm, y_mm / row_mm
        grids.append(torch.stack([(2 * px + 1) / width - 1, (2 * py + 1) / height - 1], dim=-1))
    grid = torch.stack(grids).float()
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    source = source.expand(len(geometry), 1, height, width)
    crops = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops[:, 0].numpy()
