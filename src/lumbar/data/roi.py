"""The paper's region of interest (section 3.3, Eq. 3, Figures 6-7) and simpler crops.

Eq. 3 cuts a 1061x752 image into a grid of 82x94-pixel blocks, 13 across and 8 down (104
blocks, numbered from 1 row by row), and keeps the 20 blocks

    Z = {30 + 13x + y : x in 0..4, y in 1..4}
      = 31-34, 44-47, 57-60, 70-73, 83-86,

i.e. block rows 3-7 and block columns 5-8 (1-based): the pixel box x 328-656, y 188-658.
(13 x 82 = 1066 exceeds 1061, so the last block column is 77 pixels wide; the ROI does not
touch it.) Other image sizes get the same grid scaled proportionally.

Crops are small classes validated at construction (TorchIO style) that work on numpy arrays
(H, W) or (H, W, C); `parse_roi` reads the CLI spelling: `grid`, `center:0.6`, `disc:MM`,
`none`. `disc:MM` is a physical crop: MM x MM millimetres centred on the disc centre that
`lumbar ingest` projected into each axial image (images.csv's disc_x, disc_y and PixelSpacing),
resampled to `DISC_ROI_PIXELS` square, so crops are comparable across matrix sizes and fields
of view; it needs each row's disc position (`ROI.for_row`).

Example:
    >>> GridROI().box(1061, 752)
    (328, 188, 656, 658)
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from lumbar.data.imageio import read_native, read_uint8
from lumbar.data.manifest import Manifest, manifest_text, read_manifest, relative_image_path
from lumbar.errors import UserError
from lumbar.files import prepare_output_dir, replace_dir, write_text_atomic
from lumbar.visualize.roi_figure import BlockGrid, roi_figure

#: The paper's image size (width, height), block size (width, height) and grid (across, down).
EQ3_IMAGE_SIZE: tuple[int, int] = (1061, 752)
EQ3_BLOCK_SIZE: tuple[int, int] = (82, 94)
EQ3_GRID: tuple[int, int] = (13, 8)


def eq3_blocks() -> tuple[int, ...]:
    """The block numbers of Eq. 3, in increasing order."""
    return tuple(sorted(30 + 13 * x + y for x in range(5) for y in range(1, 5)))


Box = tuple[int, int, int, int]  # left, top, right, bottom (right/bottom exclusive)
DISC_ROI_PIXELS = 224  # side of a disc ROI crop: the backbones' usual input size
DISC_ROI_COLUMNS = ("disc_x", "disc_y", "row_spacing_mm", "col_spacing_mm")


class ROI:
    """A crop that depends only on the image size."""

    spec: str = "none"

    def box(self, width: int, height: int) -> Box:
        """The crop box (left, top, right, bottom) for an image of this size."""
        return (0, 0, width, height)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Crop an (H, W) or (H, W, C) array (a view, not a copy)."""
        if image.ndim not in (2, 3):
            raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
        left, top, right, bottom = self.box(image.shape[1], image.shape[0])
        return image[top:bottom, left:right]

    def for_row(self, row: Mapping[str, str]) -> ROI:
        """The crop for one manifest row; the same crop unless it depends on the image's disc."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class NoROI(ROI):
    """The whole image."""

    spec = "none"


class CenterROI(ROI):
    """A centred crop keeping `fraction` of the width and of the height.

    Args:
        fraction: in (0, 1]; 1 keeps the whole image.
    """

    def __init__(self, fraction: float) -> None:
        if not (
            isinstance(fraction, int | float) and math.isfinite(fraction) and 0 < fraction <= 1
        ):
            raise ValueError(f"centre-crop fraction must be in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)
        self.spec = f"center:{self.fraction:g}"

    def box(self, width: int, height: int) -> Box:
        """Centred box of round(fraction x size) pixels per side (at least 1)."""
        w = max(1, round(width * self.fraction))
        h = max(1, round(height * self.fraction))
        left = (width - w) // 2
        top = (height - h) // 2
        return (left, top, left + w, top + h)


class GridROI(ROI):
    """The paper's block-grid ROI (Eq. 3), scaled to the image size.

    Args:
        blocks: block numbers to keep (1-based, row by row); default Eq. 3's twenty. The crop
            is their bounding box (for Eq. 3, exactly the union of the 20 blocks).
        grid: blocks (across, down).
        block_size: block (width, height) in pixels at `reference_size`.
        reference_size: the image (width, height) the grid is defined on.
    """

    def __init__(
        self,
        blocks: Iterable[int] | None = None,
        *,
        grid: tuple[int, int] = EQ3_GRID,
        block_size: tuple[int, int] = EQ3_BLOCK_SIZE,
        reference_size: tuple[int, int] = EQ3_IMAGE_SIZE,
    ) -> None:
        across, down = grid
        if across < 1 or down < 1:
            raise ValueError(f"grid must be at least 1x1 blocks, got {grid!r}")
        bw, bh = block_size
        rw, rh = reference_size
        if bw < 1 or bh < 1 or rw < 1 or rh < 1:
            raise ValueError("block_size and reference_size must be positive")
        if (across - 1) * bw >= rw or (down - 1) * bh >= rh:
            raise ValueError(
                f"a {across}x{down} grid of {bw}x{bh} blocks does not fit a {rw}x{rh} image"
            )
        chosen = tuple(sorted(set(eq3_blocks() if blocks is None else blocks)))
        if not chosen:
            raise ValueError("blocks must name at least one block")
        bad = [b for b in chosen if not 1 <= b <= across * down]
        if bad:
            raise ValueError(f"block numbers {bad} are outside 1..{across * down}")
        self.blocks = chosen
        self.grid = (across, down)
        self.block_size = (bw, bh)
        self.reference_size = (rw, rh)
        self.spec = "grid" if blocks is None else "grid:" + ",".join(map(str, chosen))

    def block_cell(self, block: int) -> tuple[int, int]:
        """(column, row), 0-based, of a 1-based block number."""
        return ((block - 1) % self.grid[0], (block - 1) // self.grid[0])

    def edges(self, width: int, height: int) -> tuple[list[int], list[int]]:
        """Block edges in pixels for an image of this size: x edges and y edges.

        At the reference size the edges are multiples of the block size, with the last edge
        clipped to the image; other sizes scale them proportionally.
        """
        across, down = self.grid
        bw, bh = self.block_size
        rw, rh = self.reference_size
        xs = [min(i * bw, rw) for i in range(across)] + [rw]
        ys = [min(j * bh, rh) for j in range(down)] + [rh]
        return ([round(x * width / rw) for x in xs], [round(y * height / rh) for y in ys])

    def block_box(self, block: int, width: int, height: int) -> Box:
        """The pixel box of one block."""
        xs, ys = self.edges(width, height)
        col, row = self.block_cell(block)
        return (xs[col], ys[row], xs[col + 1], ys[row + 1])

    def box(self, width: int, height: int) -> Box:
        """Bounding box of the chosen blocks."""
        boxes = [self.block_box(b, width, height) for b in self.blocks]
        return (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )


class DiscROI(ROI):
    """MM x MM millimetres centred on the disc, resampled to `pixels` square (`disc:MM`).

    Each image's crop comes from `for_row` (its disc position and PixelSpacing); calling the
    unplaced ROI is an error, since without the disc there is nothing to centre on.

    Args:
        mm: side of the square in millimetres, in (0, 500].
        pixels: side of the output in pixels, at least 16.
    """

    def __init__(self, mm: float, pixels: int = DISC_ROI_PIXELS) -> None:
        if not (isinstance(mm, int | float) and math.isfinite(mm) and 0 < mm <= 500):
            raise ValueError(f"disc ROI size must be in (0, 500] mm, got {mm!r}")
        if pixels < 16:
            raise ValueError(f"disc ROI output must be at least 16 pixels, got {pixels}")
        self.mm = float(mm)
        self.pixels = int(pixels)
        self.spec = f"disc:{self.mm:g}"

    def box(self, width: int, height: int) -> Box:
        raise ValueError(f"ROI {self.spec} needs each image's disc position (for_row)")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        raise ValueError(f"ROI {self.spec} needs each image's disc position (for_row)")

    def for_row(self, row: Mapping[str, str]) -> ROI:
        """This ROI placed on the row's disc.

        Raises:
            ValueError: the row lacks a disc position or PixelSpacing (images.csv of an ingest
                that chose the image without disc centres, e.g. `--axial-selection paper`).
        """
        try:
            x, y, row_mm, col_mm = (float(row.get(c) or "nan") for c in DISC_ROI_COLUMNS)
        except ValueError:
            x = y = row_mm = col_mm = math.nan
        if not all(math.isfinite(v) for v in (x, y, row_mm, col_mm)) or min(row_mm, col_mm) <= 0:
            raise ValueError(
                f"ROI {self.spec} needs the disc position and PixelSpacing ("
                + ", ".join(DISC_ROI_COLUMNS)
                + ") that `lumbar ingest --axial-selection auto|geometry` writes"
            )
        return PlacedDiscROI(self, (x, y), (row_mm, col_mm))


class PlacedDiscROI(ROI):
    """A `DiscROI` on one image: disc centre (x = column, y = row) and PixelSpacing (row, col)."""

    def __init__(
        self, roi: DiscROI, centre: tuple[float, float], spacing: tuple[float, float]
    ) -> None:
        self.roi = roi
        self.centre = centre
        self.spacing = spacing
        self.spec = roi.spec

    def box(self, width: int, height: int) -> Box:
        """The crop's pixel box in the image (may reach beyond it; outside is black)."""
        half_x = self.roi.mm / 2 / self.spacing[1]
        half_y = self.roi.mm / 2 / self.spacing[0]
        x, y = self.centre
        return (
            math.floor(x - half_x + 0.5),
            math.floor(y - half_y + 0.5),
            math.floor(x + half_x + 0.5),
            math.floor(y + half_y + 0.5),
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Bilinear resampling of the MM x MM square to pixels x pixels (zero outside)."""
        if image.ndim not in (2, 3):
            raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
        n = self.roi.pixels
        step = self.roi.mm / n  # mm per output pixel; output pixel centres at (i + 0.5) * step
        offsets = (np.arange(n) + 0.5) * step - self.roi.mm / 2
        xs = self.centre[0] + offsets / self.spacing[1]
        ys = self.centre[1] + offsets / self.spacing[0]
        return _bilinear(image, ys, xs)


def _bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """image sampled at rows `ys` x columns `xs` (pixel centres at integers), 0 outside."""
    height, width = image.shape[:2]
    data = image.astype(np.float32)
    if data.ndim == 2:
        data = data[..., None]
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    fy = (ys - y0).astype(np.float32)[:, None, None]
    fx = (xs - x0).astype(np.float32)[None, :, None]

    def at(yi: np.ndarray, xi: np.ndarray) -> np.ndarray:
        valid = (
            (yi >= 0)[:, None] & (yi < height)[:, None] & (xi >= 0)[None, :] & (xi < width)[None, :]
        )
        values = data[np.clip(yi, 0, height - 1)][:, np.clip(xi, 0, width - 1)]
        return values * valid[..., None]

    out = (
        at(y0, x0) * (1 - fy) * (1 - fx)
        + at(y0, x0 + 1) * (1 - fy) * fx
        + at(y0 + 1, x0) * fy * (1 - fx)
        + at(y0 + 1, x0 + 1) * fy * fx
    )
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    out = out.astype(image.dtype)
    return out[..., 0] if image.ndim == 2 else out


def image_roi(spec: str | ROI | None, where: str) -> ROI:
    """`parse_roi` for a place that crops images without their manifest rows (`where`).

    Raises:
        UserError: a bad spelling, or `disc:MM`, which needs each image's disc position.
    """
    roi = parse_roi(spec)
    if isinstance(roi, DiscROI):
        raise UserError(
            f"ROI {roi.spec} needs each image's disc position, which {where} does not have yet; "
            "use grid, center:F or none"
        )
    return roi


def parse_roi(spec: str | ROI | None) -> ROI:
    """An ROI from its CLI spelling: `none`, `grid` (Eq. 3), `grid:31,32,...`, `center:F`,
    `disc:MM` (MM x MM mm around the disc).

    Raises:
        UserError: an unknown spelling or a bad fraction/block list.
    """
    if isinstance(spec, ROI):
        return spec
    text = (spec or "none").strip().lower()
    try:
        if text == "none":
            return NoROI()
        if text in ("grid", "eq3"):
            return GridROI()
        if text.startswith("grid:"):
            return GridROI(int(b) for b in text[5:].split(",") if b.strip())
        if text.startswith(("center:", "centre:")):
            return CenterROI(float(text.split(":", 1)[1]))
        if text.startswith("disc:"):
            return DiscROI(float(text.split(":", 1)[1]))
    except ValueError as err:
        raise UserError(f"ROI {spec!r}: {err}") from None
    raise UserError(
        f"unknown ROI {spec!r}; use grid, center:F (0 < F <= 1), disc:MM (mm around the disc) "
        "or none"
    )


def crop_manifest(
    manifest_path: Path,
    out: Path,
    roi: ROI,
    *,
    views: Iterable[str] | None = ("axial_t2",),
    force: bool = False,
) -> tuple[Path, int]:
    """Write the manifest's images cropped to `roi` under `out/images/`, and `out/manifest.csv`.

    The paper's ROI is defined on axial disc images, so by default only rows whose `view` is
    `axial_t2` are cropped (all rows when the manifest has no `view` column); other rows are
    kept, pointing at their original images, with `roi` = `none`. Crops keep the stored bit
    depth (8-bit stays 8-bit, 16-bit stays 16-bit PNG); DICOM pixel data (after its modality
    LUT) is stretched to a 16-bit PNG. The new manifest keeps every column and adds `roi`.

    Args:
        views: the views to crop; None crops every row.

    Returns:
        The manifest written and the number of images cropped.

    Raises:
        UserError: invalid manifest, unreadable image, or output folder; nothing is written.
    """
    from PIL import Image

    out = Path(out)
    prepare_output_dir(out, force=force)
    manifest = read_manifest(manifest_path)
    wanted = None if views is None or not manifest.has_column("view") else set(views)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    try:
        rows = []
        cropped = 0
        width = len(str(len(manifest)))
        for i, row in enumerate(manifest.rows):
            if wanted is not None and row.get("view", "") not in wanted:
                original = relative_image_path(manifest.image_path(i), out)
                rows.append({**row, "image": original, "roi": "none"})
                continue
            try:
                pixels = read_native(manifest.image_path(i))
            except Exception:
                raise manifest.error([i], "image file could not be decoded") from None
            try:
                placed = roi.for_row(row)
            except ValueError as err:
                raise manifest.error([i], str(err)) from None
            crop = placed(pixels)
            if crop.dtype == np.float32:  # DICOM: keep precision in a 16-bit PNG
                low, high = float(crop.min()), float(crop.max())
                scale = 65535.0 / (high - low) if high > low else 0.0
                crop = np.rint((crop - low) * scale).astype(np.uint16)
            name = f"images/{i + 1:0{width}d}-{Path(row['image']).stem}.png"
            Image.fromarray(np.ascontiguousarray(crop)).save(staging / name)
            rows.append({**row, "image": name, "roi": roi.spec})
            cropped += 1
        if cropped == 0:
            raise UserError(
                f"{manifest_path}: no row has view {', '.join(sorted(wanted or []))}; "
                "nothing to crop (crop all views)",
                option="views",
            )
        columns = (*manifest.columns, "roi") if "roi" not in manifest.columns else manifest.columns
        result = Manifest(out / "manifest.csv", tuple(columns), tuple(rows))
        write_text_atomic(staging / "manifest.csv", manifest_text(result.columns, result.rows))
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / "manifest.csv", cropped


def draw_roi_figure(image_path: Path, out: Path, roi: ROI, *, credit: str | None = None) -> Path:
    """Draw Figures 6-7 on any image: the block grid with the ROI highlighted, and the crop.

    For a `GridROI` every block is outlined and numbered and the chosen blocks are shaded;
    other ROIs show their box. The figure is written atomically to `out` (PNG).

    Raises:
        UserError: unreadable image.
    """
    image_path = Path(image_path)
    try:
        pixels = read_uint8(image_path)
    except FileNotFoundError:
        raise UserError(f"{image_path}: file not found") from None
    except Exception as err:
        raise UserError(f"{image_path}: not a readable image ({type(err).__name__})") from None
    height, width = pixels.shape[:2]
    grid = None
    title = f"{roi.spec} on {width}x{height}"
    if isinstance(roi, GridROI):
        xs, ys = roi.edges(width, height)
        blocks = [
            (block, roi.block_box(block, width, height), block in roi.blocks)
            for block in range(1, roi.grid[0] * roi.grid[1] + 1)
        ]
        grid = BlockGrid(xs, ys, blocks)
        title = (
            f"Eq. 3 block grid {roi.grid[0]}x{roi.grid[1]} scaled to {width}x{height}; "
            f"{len(roi.blocks)} ROI blocks"
        )
    return roi_figure(
        pixels, roi(pixels), roi.box(width, height), out, title=title, grid=grid, credit=credit
    )
