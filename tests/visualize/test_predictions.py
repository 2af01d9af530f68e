"""Graded discs drawn on their slice: display window, colours, boxes and labels."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lumbar.visualize.predictions import abnormal_colour, draw_graded_discs, gray_uint8


@dataclass
class _Disc:
    level: str
    x: float
    y: float
    box: tuple[tuple[float, float], ...]
    p_abnormal: float


def test_window_and_colours() -> None:
    values = np.linspace(-1000.0, 3000.0, 10_000, dtype=np.float32).reshape(100, 100)
    gray = gray_uint8(values)
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255
    assert not gray_uint8(np.full((8, 8), 7.0)).any()  # a constant slice is black
    assert abnormal_colour(0.0) == (0, 220, 40) and abnormal_colour(1.0) == (255, 0, 40)
    assert abnormal_colour(0.5) == (255, 220, 40)


def test_small_slices_are_drawn_larger_with_a_box_in_the_disc_colour() -> None:
    gray = np.zeros((128, 100), np.uint8)
    disc = _Disc("L4-L5", 50.0, 64.0, ((30.0, 58.0), (70.0, 58.0), (70.0, 70.0), (30.0, 70.0)), 0.9)
    picture = np.asarray(Image.open(io.BytesIO(draw_graded_discs(gray, [disc]))))
    assert picture.shape == (512, 400, 3)  # 4x: at least 512 px tall
    red = abnormal_colour(0.9)
    on_box = picture[4 * 58 + 1, 4 * 50]  # the box's top edge, mid-way
    assert tuple(int(v) for v in on_box) == red
    assert not picture[4 * 64, 4 * 50].any()  # inside the box: the slice, untouched
