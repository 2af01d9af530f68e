"""Found discs drawn on their image, and a contact sheet of such overlays (`lumbar localize`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from lumbar.files import atomic_path

SHEET_THUMB = 256
SHEET_LABEL = 14


class _Disc(Protocol):
    level: str | None
    x: float
    y: float
    confidence: float


def _colour(confidence: float, named: bool) -> tuple[int, int, int]:
    if not named:
        return (255, 170, 0)  # orange: found, not named
    return (0, 220, 0) if confidence >= 0.5 else (230, 60, 60)


def draw_discs(image01: np.ndarray, discs: Sequence[_Disc], title: str = ""):
    """An RGB PIL image: the [0, 1] gray image with a marker, level and confidence per disc.

    Green: named with confidence >= 0.5; red: named, less confident; orange: not named.
    """
    from PIL import Image, ImageDraw

    gray = (np.clip(image01, 0, 1) * 255).astype(np.uint8)
    picture = Image.fromarray(gray).convert("RGB")
    scale = max(1.0, 384 / max(gray.shape))  # small images are drawn larger, text stays legible
    if scale > 1:
        picture = picture.resize((round(gray.shape[1] * scale), round(gray.shape[0] * scale)))
    draw = ImageDraw.Draw(picture)
    r = max(3.0, picture.width / 120)
    for d in discs:
        x, y = (d.x + 0.5) * scale - 0.5, (d.y + 0.5) * scale - 0.5
        colour = _colour(d.confidence, d.level is not None)
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
        label = f"{d.level or '?'} {d.confidence:.2f}"
        draw.text((x + r + 3, y - 6), label, fill=colour)
    if title:
        draw.text((4, 2), title, fill=(255, 255, 0))
    if not discs:
        draw.text((4, picture.height - 14), "no discs found", fill=(255, 80, 80))
    return picture


def write_overlay(picture, target: Path) -> None:
    """Save a PIL image as PNG atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        picture.save(tmp, format="PNG")
        tmp.chmod(0o644)


def write_overlay_sheet(items: Sequence[tuple[str, Path]], target: Path, columns: int = 6) -> int:
    """A grid of overlay thumbnails, each captioned; returns the number drawn."""
    from PIL import Image, ImageDraw

    if not items:
        return 0
    rows = (len(items) + columns - 1) // columns
    cell = SHEET_THUMB + SHEET_LABEL
    sheet = Image.new("RGB", (SHEET_THUMB * min(columns, len(items)), cell * rows), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for i, (caption, path) in enumerate(items):
        x, y = (i % columns) * SHEET_THUMB, (i // columns) * cell
        with Image.open(path) as image:
            thumb = image.convert("RGB")
            thumb.thumbnail((SHEET_THUMB - 2, SHEET_THUMB - 2))
            sheet.paste(thumb, (x + 1, y + SHEET_LABEL))
        draw.text((x + 3, y + 1), caption[:40], fill=(255, 255, 255))
    write_overlay(sheet, target)
    return len(items)
