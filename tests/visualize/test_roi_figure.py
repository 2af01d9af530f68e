"""Figures 6-7 drawn from the geometry they are given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lumbar.visualize.roi_figure import BlockGrid, roi_figure


def test_grid_and_crop_side_by_side(tmp_path: Path) -> None:
    pixels = np.tile(np.arange(64, dtype=np.uint8), (48, 1))
    grid = BlockGrid(
        xs=[0, 32, 64],
        ys=[0, 24, 48],
        blocks=[(1, (0, 0, 32, 24), False), (2, (32, 0, 64, 24), True)],
    )
    out = roi_figure(
        pixels, pixels[0:24, 32:64], (32, 0, 64, 24), tmp_path / "f" / "roi.png",
        title="two blocks", grid=grid, credit="phantom",
    )  # fmt: skip
    with Image.open(out) as image:
        assert image.size == (1430, 728)  # 11 x 5.6 inches at 130 dpi
    plain = roi_figure(pixels, pixels, (0, 0, 64, 48), tmp_path / "plain.png", title="none")
    assert plain.stat().st_size > 1000
