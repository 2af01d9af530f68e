"""Heat-map overlays, lesion boxes and image grids (Figures 17-18)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lumbar.visualize.overlays import compare_grid, draw_box, heat_colors, overlay


def test_overlay_blends_a_resized_heatmap() -> None:
    image = np.full((20, 30), 100, dtype=np.uint8)
    heat = np.zeros((5, 5), dtype=np.float32)
    out = overlay(image, heat, alpha=0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (50, 50, 114)  # jet(0) = dark blue (0, 0, 127.5)
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, heat, alpha=2)


def test_heat_colors_run_from_blue_to_red() -> None:
    colors = heat_colors(np.array([[0.0, 1.0, 7.0]]))
    assert colors[0, 0, 2] > colors[0, 0, 0] and colors[0, 1, 0] > colors[0, 1, 2]
    assert np.array_equal(colors[0, 1], colors[0, 2])  # clipped to [0, 1]


def test_draw_box_outlines_in_white() -> None:
    picture = np.zeros((10, 10, 3), dtype=np.uint8)
    boxed = draw_box(picture, (2, 3, 6, 8))
    assert tuple(boxed[3, 2]) == (255, 255, 255) and tuple(boxed[7, 5]) == (255, 255, 255)
    assert tuple(boxed[5, 4]) == (0, 0, 0)  # inside stays as it was
    assert not picture.any()


def test_compare_grid_writes_one_png(tmp_path: Path) -> None:
    image = np.full((16, 16), 90, dtype=np.uint8)
    colour = overlay(image, np.ones((16, 16), dtype=np.float32))
    rows = [[image, colour, colour], [image, colour, colour]]
    out = compare_grid(rows, ["image", "run a", "run b"], ["a", "b"], tmp_path / "grid.png")
    with Image.open(out) as grid:
        assert grid.size == (780, 520)  # 2.6 inches a cell at 100 dpi
    assert not list(tmp_path.glob(".*.part"))
