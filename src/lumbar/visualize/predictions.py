"""Graded discs drawn on their sagittal slice (`lumbar predict`): a box per disc, sized from the
disc spacing and turned along the spine, with its level and P(abnormal)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

__all__ = ["abnormal_colour", "draw_graded_discs", "gray_uint8"]

#: Small slices are drawn at least this tall, so labels stay legible.
MIN_HEIGHT = 512


class _GradedDisc(Protocol):
    level: str
    x: float
    y: float
    box: tuple[tuple[float, float], ...]

    @property
    def p_abnormal(self) -> float: ...


def gray_uint8(pixels: np.ndarray) -> np.ndarray:
    """A slice of any value range as 8-bit gray for display: 0.5-99.5 percentile window."""
    values = np.asarray(pixels, dtype=np.float32)
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.clip((values - low) * (255.0 / (high - low)) + 0.5, 0, 255).astype(np.uint8)


def abnormal_colour(p: float) -> tuple[int, int, int]:
    """Green (likely normal) through yellow to red (likely abnormal)."""
    p = float(np.clip(p, 0.0, 1.0))
    return (round(255 * min(1.0, 2 * p)), round(220 * min(1.0, 2 * (1 - p))), 40)


def draw_graded_discs(gray: np.ndarray, discs: Sequence[_GradedDisc], title: str = "") -> bytes:
    """PNG bytes of the 8-bit slice with each disc's box, level and P(abnormal)."""
    import io

    from PIL import Image, ImageDraw

    picture = Image.fromarray(gray).convert("RGB")
    scale = max(1.0, MIN_HEIGHT / gray.shape[0])
    if scale > 1:
        size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
        picture = picture.resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(picture)
    for d in discs:
        colour = abnormal_colour(d.p_abnormal)
        corners = [((x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5) for x, y in d.box]
        draw.polygon(corners, outline=colour, width=2)
        right = max(c[0] for c in corners)
        top = min(c[1] for c in corners)
        bottom = max(c[1] for c in corners)
        draw.text(
            (right + 4, (top + bottom) / 2 - 6),
            f"{d.level}  {d.p_abnormal:.2f}",
            fill=colour,
            stroke_width=1,
            stroke_fill=(0, 0, 0),
        )
    if title:
        draw.text((4, 2), title, fill=(255, 255, 0), stroke_width=1, stroke_fill=(0, 0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
