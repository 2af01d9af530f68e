"""Heat-map overlays and image grids (Grad-CAM, the paper's Figures 17-18).

Everything here draws given pixels: (H, W) or (H, W, 3) uint8 images and (H, W) heat maps in
[0, 1]. Reading images and computing heat maps belong to `lumbar.data` and `lumbar.explain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lumbar.files import atomic_path

__all__ = ["compare_grid", "draw_box", "heat_colors", "overlay"]


def heat_colors(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 with the jet colour map (as in Figures 17-18)."""
    from matplotlib import colormaps

    rgba = colormaps["jet"](np.clip(heatmap, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heat map resized onto `image` ((H, W) or (H, W, 3) uint8), blended: (H, W, 3) uint8."""
    from PIL import Image

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    height, width = base.shape[:2]
    if heatmap.shape != (height, width):
        resized = Image.fromarray(heatmap.astype(np.float32), mode="F").resize(
            (width, height), Image.Resampling.BILINEAR
        )
        heatmap = np.asarray(resized)
    colors = heat_colors(heatmap).astype(np.float32)
    blended = (1.0 - alpha) * base.astype(np.float32) + alpha * colors
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def draw_box(picture: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """`picture` ((H, W, 3) uint8) with `box` (x0, y0, x1, y1 in pixels) outlined in white."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(picture)
    ImageDraw.Draw(image).rectangle(
        [round(box[0]), round(box[1]), round(box[2]) - 1, round(box[3]) - 1], outline=(255,) * 3
    )
    return np.asarray(image)


def compare_grid(
    rows: Sequence[Sequence[np.ndarray]],
    column_titles: Sequence[str],
    row_titles: Sequence[str],
    out: Path,
) -> Path:
    """One PNG: a row per image, the plain image then one overlay per run (Figures 17-18)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), len(column_titles)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.6 * n_cols, 2.6 * n_rows), squeeze=False, dpi=100
    )
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            ax = axes[r][c]
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(column_titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)
