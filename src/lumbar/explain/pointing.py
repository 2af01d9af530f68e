"""The pointing game: does a heat map's maximum fall inside the known lesion box?

The share of lesions hit is set beside a random-point baseline, the box's share of the image
area (Zhang et al., "Top-down neural attention by excitation backprop", IJCV 2018).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PointingResult", "box_share", "point_in_box", "pointing_game"]


@dataclass
class PointingResult:
    """The pointing game over lesions with a known box.

    Attributes:
        lesions: how many lesions were scored.
        hits: heat-map maxima inside their lesion's box.
        random_baseline: expected hit rate of a uniformly random point (mean box area share).
        per_image: one dict per lesion (image, level, hit, box share, peak).
    """

    lesions: int
    hits: int
    random_baseline: float
    per_image: list[dict[str, Any]]

    @property
    def hit_rate(self) -> float:
        """hits / lesions (0 when there is none)."""
        return self.hits / self.lesions if self.lesions else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "lesions": self.lesions,
            "hits": self.hits,
            "hit_rate": round(self.hit_rate, 4),
            "random_baseline": round(self.random_baseline, 4),
        }


def point_in_box(
    heatmap: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> tuple[bool, tuple[float, float]]:
    """Whether the heat map's maximum lies in `box`, given in the pixels of an image of `size`
    (width, height) that the heat map covers; also the peak in those pixels (x, y)."""
    height, width = heatmap.shape
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    x = (col + 0.5) * size[0] / width
    y = (row + 0.5) * size[1] / height
    x0, y0, x1, y1 = box
    return bool(x0 <= x <= x1 and y0 <= y <= y1), (x, y)


def box_share(box: tuple[float, float, float, float], size: tuple[int, int]) -> float:
    """The share of a (width, height) image that `box` covers after clipping: the hit chance
    of a uniformly random point."""
    x0, y0, x1, y1 = box
    w = max(0.0, min(x1, size[0]) - max(x0, 0.0))
    h = max(0.0, min(y1, size[1]) - max(y0, 0.0))
    return w * h / float(size[0] * size[1])


def pointing_game(
    heatmaps: Sequence[np.ndarray],
    boxes: Sequence[tuple[float, float, float, float]],
    sizes: Sequence[tuple[int, int]],
    names: Sequence[str] | None = None,
    tolerance: float = 0.0,
) -> PointingResult:
    """Score heat maps against lesion boxes (each in its image's pixels, image of `sizes`).

    Args:
        tolerance: grow each box by this many pixels on every side first (Zhang et al.'s
            pointing game uses 15 px); the random baseline uses the grown box too.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    per_image = []
    hits = 0
    shares = []
    for i, (heat, box, size) in enumerate(zip(heatmaps, boxes, sizes, strict=True)):
        t = tolerance
        box = (box[0] - t, box[1] - t, box[2] + t, box[3] + t)
        hit, peak = point_in_box(heat, box, size)
        share = box_share(box, size)
        hits += hit
        shares.append(share)
        per_image.append(
            {
                "image": names[i] if names else str(i),
                "hit": hit,
                "peak_x": round(peak[0], 1),
                "peak_y": round(peak[1], 1),
                "box": list(box),
                "box_share": round(share, 5),
            }
        )
    baseline = float(np.mean(shares)) if shares else 0.0
    return PointingResult(len(per_image), hits, baseline, per_image)
