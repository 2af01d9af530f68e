"""The paper's Figures 6-7: an image with its block grid and region of interest, and the crop.

`lumbar.data.roi.draw_roi_figure` computes the geometry of a crop on an image; this module
draws what it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumbar.files import atomic_path

__all__ = ["BlockGrid", "roi_figure"]

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels


@dataclass(frozen=True)
class BlockGrid:
    """A block grid as drawn: the block edges, and each block's number, box and whether the
    region of interest includes it (Eq. 3)."""

    xs: Sequence[int]
    ys: Sequence[int]
    blocks: Sequence[tuple[int, Box, bool]]


def roi_figure(
    pixels: np.ndarray,
    crop: np.ndarray,
    box: Box,
    out: Path,
    *,
    title: str,
    grid: BlockGrid | None = None,
    credit: str | None = None,
) -> Path:
    """Draw `pixels` (uint8) with `grid` (blocks outlined and numbered, chosen ones shaded) and
    the ROI `box` outlined, beside the `crop`; write the PNG atomically to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    width = pixels.shape[1]
    cmap = "gray" if pixels.ndim == 2 else None
    left, top, right, bottom = box
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(11, 5.6), gridspec_kw={"width_ratios": [width, max(1, right - left) * 1.4]}
    )
    ax1.imshow(pixels, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    if grid is not None:
        for x in grid.xs:
            ax1.axvline(x - 0.5, color="#ffd54f", lw=0.6, alpha=0.8)
        for y in grid.ys:
            ax1.axhline(y - 0.5, color="#ffd54f", lw=0.6, alpha=0.8)
        fontsize = max(4.0, min(8.0, 7.0 * width / 500))
        for number, b, chosen in grid.blocks:
            if chosen:
                ax1.add_patch(
                    Rectangle(
                        (b[0] - 0.5, b[1] - 0.5),
                        b[2] - b[0],
                        b[3] - b[1],
                        facecolor="#e53935",
                        alpha=0.28,
                        lw=0,
                    )
                )
            ax1.text(
                (b[0] + b[2]) / 2,
                (b[1] + b[3]) / 2,
                str(number),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if chosen else "#ffd54f",
                weight="bold" if chosen else None,
            )
    ax1.add_patch(
        Rectangle(
            (left - 0.5, top - 0.5),
            right - left,
            bottom - top,
            fill=False,
            edgecolor="#e53935",
            lw=2,
        )
    )
    ax1.set_title(title, fontsize=10)
    ax1.set_axis_off()
    ax2.imshow(crop, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    ax2.set_title(
        f"ROI {right - left}x{bottom - top} px (x {left}-{right}, y {top}-{bottom})", fontsize=10
    )
    ax2.set_axis_off()
    if credit:
        fig.text(0.01, 0.01, credit, fontsize=7, color="#555555", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03 if credit else 0, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
    return out
