"""From heat maps to named discs: peaks, order along the spine, names counted up from L5-S1.

Naming never counts from the top (the field of view may start anywhere in the thoracic
spine): the network's second heat map marks the L5-S1 disc alone, the disc above the sacrum;
the others are named upward from it, one level per disc gap (a gap about twice the local
spacing skips a level, a missed disc). Without a confident L5-S1 every disc stays unnamed
(level None), as do discs found below it or above T9-T10: reported, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lumbar.grading import SPINE_LEVELS
from lumbar.localize.model import STRIDE
from lumbar.localize.preprocess import Letterbox

ANCHOR = SPINE_LEVELS.index("L5-S1")
#: Heat-map peaks below this are not candidates at all.
CANDIDATE = 0.1
#: Two discs are never closer than this (mm) on a real spine; a closer pair is one disc.
MIN_DISC_GAP_MM = 8.0


@dataclass(frozen=True)
class Disc:
    """One disc found on an image: level (None: found but not named), centre, confidence 0-1.

    x, y are pixel centres of the given image (x = column, y = row index, as numpy indexes).
    """

    level: str | None
    x: float
    y: float
    confidence: float


@dataclass(frozen=True)
class Peak:
    """A heat-map maximum in image pixels: disc score and L5-S1 score at it."""

    x: float
    y: float
    score: float
    anchor: float


@dataclass(frozen=True)
class Decoding:
    """How peaks become discs; fitted on out-of-fold outputs (calibrate.py)."""

    detect: float = 0.3  # a peak is a disc from this disc score
    anchor: float = 0.3  # the lowest L5-S1 candidate must score this to name anything
    # L5-S1 is the lowest of the peaks scoring at least this share of the best L5-S1 score
    # (1.0: the best one); the heat map often splits between L5-S1 and L4-L5
    anchor_ratio: float = 1.0
    # the image must reach this many disc gaps below the L5-S1 disc (room for the sacrum), or
    # nothing is named: a lowest disc at the bottom edge may be L4-L5 with the sacrum cut off.
    # On SPIDER the true L5-S1 disc has at least 0.92 gaps below it (fixed, not fitted).
    min_margin: float = 0.8
    # isotonic maps (knots x, values y) from raw confidence to the observed share right
    named_x: tuple[float, ...] = (0.0, 1.0)
    named_y: tuple[float, ...] = (0.0, 1.0)
    unnamed_x: tuple[float, ...] = (0.0, 1.0)
    unnamed_y: tuple[float, ...] = (0.0, 1.0)


def find_peaks(output: np.ndarray, box: Letterbox, threshold: float = CANDIDATE) -> list[Peak]:
    """Local maxima (3x3) of the disc heat map, refined by the offsets, in image pixels."""
    heat, anchor, dx, dy = output.astype(np.float32)
    g = heat.shape[0]
    padded = np.pad(heat, 1, constant_values=-1.0)
    neighbours = np.stack(
        [padded[1 + i : 1 + i + g, 1 + j : 1 + j + g] for i in (-1, 0, 1) for j in (-1, 0, 1)]
    )
    is_peak = (heat >= neighbours.max(axis=0)) & (heat >= threshold)
    peaks = []
    for iy, ix in zip(*np.nonzero(is_peak), strict=True):
        cx, cy = ix + float(dx[iy, ix]), iy + float(dy[iy, ix])
        xy = box.to_image(np.array([[(cx + 0.5) * STRIDE - 0.5, (cy + 0.5) * STRIDE - 0.5]]))[0]
        a = float(anchor[max(0, iy - 1) : iy + 2, max(0, ix - 1) : ix + 2].max())
        peaks.append(Peak(float(xy[0]), float(xy[1]), float(heat[iy, ix]), a))
    return peaks


def _merge_close(peaks: list[Peak], min_gap_px: float = 0.0) -> list[Peak]:
    """Drop the weaker of two peaks closer than 0.4 of the median gap or `min_gap_px`
    (one disc, two maxima)."""
    peaks = sorted(peaks, key=lambda p: p.y)
    while len(peaks) >= 2:
        xy = np.array([(p.x, p.y) for p in peaks])
        gaps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        i = int(np.argmin(gaps))
        relative = 0.4 * float(np.median(gaps)) if len(gaps) >= 2 else 0.0
        if gaps[i] >= max(relative, min_gap_px):
            break
        peaks.pop(i if peaks[i].score < peaks[i + 1].score else i + 1)
    return peaks


def _on_spine(peaks: list[Peak]) -> list[Peak]:
    """Drop peaks off the spine: further from a quadratic x(y) through the strong peaks
    (score >= 0.5, weighted by score) than 0.6 of their median gap (bowel, vessels)."""
    strong = sorted((p for p in peaks if p.score >= 0.5), key=lambda p: p.y)
    if len(strong) < 4:
        return peaks
    xs = np.array([p.x for p in strong])
    ys = np.array([p.y for p in strong])
    gap = float(np.median(np.hypot(np.diff(xs), np.diff(ys))))
    curve = np.polyfit(ys, xs, 2, w=[p.score for p in strong])
    return [p for p in peaks if abs(p.x - np.polyval(curve, p.y)) <= 0.6 * gap]


def _interp(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    return float(np.interp(x, xs, ys))


def name_discs(
    peaks: list[Peak], decoding: Decoding, min_gap_px: float = 0.0, height: float | None = None
) -> list[Disc]:
    """Order peaks top to bottom, name upward from the L5-S1 anchor, attach confidences.

    `height` (image rows) enables the sacrum-room check (Decoding.min_margin).
    """
    kept = _merge_close(_on_spine([p for p in peaks if p.score >= decoding.detect]), min_gap_px)
    if not kept:
        return []
    levels: list[int | None] = [None] * len(kept)
    anchor_score = max(p.anchor for p in kept)
    if anchor_score >= decoding.anchor:
        bar = max(decoding.anchor, decoding.anchor_ratio * anchor_score)
        a = max(i for i in range(len(kept)) if kept[i].anchor >= bar)
        xy = np.array([(p.x, p.y) for p in kept])
        gaps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        if height is not None and len(gaps):
            gap = float(gaps[a - 1]) if a > 0 else float(np.median(gaps))
            if (height - 1 - kept[a].y) < decoding.min_margin * gap:
                return _unnamed(kept, decoding)
        levels[a] = ANCHOR
        level = ANCHOR
        for j in range(a - 1, -1, -1):
            # reference: the gaps next to this one (below it, else above), else all gaps
            near = [gaps[k] for k in (j + 1, j - 1) if 0 <= k < len(gaps)]
            ref = float(np.median(near)) if near else float(gaps[j])
            steps = int(np.clip(round(float(gaps[j]) / ref), 1, 3)) if ref > 0 else 1
            level -= steps
            if level < 0:
                break
            levels[j] = level
    discs = []
    for p, index in zip(kept, levels, strict=True):
        if index is None:
            confidence = _interp(p.score, decoding.unnamed_x, decoding.unnamed_y)
            discs.append(Disc(None, p.x, p.y, confidence))
        else:
            raw = p.score * anchor_score
            confidence = _interp(raw, decoding.named_x, decoding.named_y)
            discs.append(Disc(SPINE_LEVELS[index], p.x, p.y, confidence))
    return discs


def image_context(
    shape: tuple[int, ...], spacing_mm: tuple[float, float] | None
) -> tuple[float, float]:
    """(min_gap_px, height) for `name_discs` from an image's shape and pixel spacing."""
    return (MIN_DISC_GAP_MM / min(spacing_mm) if spacing_mm else 0.0), float(shape[0])


def _unnamed(kept: list[Peak], decoding: Decoding) -> list[Disc]:
    return [
        Disc(None, p.x, p.y, _interp(p.score, decoding.unnamed_x, decoding.unnamed_y)) for p in kept
    ]


def decode(
    output: np.ndarray,
    box: Letterbox,
    decoding: Decoding,
    min_gap_px: float = 0.0,
    height: float | None = None,
) -> list[Disc]:
    """Network output of one image -> its discs, top to bottom (`height`: image rows)."""
    return name_discs(find_peaks(output, box), decoding, min_gap_px, height)
