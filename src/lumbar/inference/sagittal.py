"""Grade every disc of sagittal slices: the disc localiser finds and names them, the sagittal
grader grades each (issue 16).

The localiser runs once over the slices of every input of a `lumbar predict` call (images and
the central sagittal T2 slices of studies, one batch), then the grader grades each slice's named
discs. A DICOM study's slices are fused per level as `lumbar localize` does
(`lumbar.localize.study.fuse`), and its discs are graded on the central slice.

An input without a confidently found, named disc (a brain slice, a blank image, an axial slice
given as sagittal) gets no grade at all: `NoConfidentDiscs`, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from lumbar.errors import UserError
from lumbar.grading import PFIRRMANN_GRADES, SPINE_LEVELS
from lumbar.inference.inputs import SagittalImage
from lumbar.visualize.predictions import gray_uint8

__all__ = [
    "MIN_CONFIDENCE",
    "DiscResult",
    "NoConfidentDiscs",
    "SagittalPrediction",
    "disc_boxes",
    "grade_slices",
]

#: The pixel spacing assumed for an image without one (PNG/JPEG): crops and boxes are sized
#: from the disc spacing in pixels then, which is the same thing for every disc but one alone.
UNKNOWN_SPACING = (1.0, 1.0)
#: A disc is graded only when the localiser's calibrated confidence that it is found and named
#: right reaches this; an input with no such disc has no prediction.
MIN_CONFIDENCE = 0.5
#: The drawn box around a disc, in units of the local disc spacing (centre to centre of the
#: neighbouring discs): wide enough for the disc's front-to-back extent, about one disc high.
BOX_WIDTH = 1.2
BOX_HEIGHT = 0.5


class NoConfidentDiscs(UserError):
    """No disc was found and named with enough confidence: no prediction for this input."""


class DiscFinder(Protocol):
    """What `grade_slices` needs of a localiser (`lumbar.localize.Localizer`)."""

    def find(
        self, images: list[np.ndarray], spacing_mm: list[tuple[float, float] | None]
    ) -> list[list[Any]]: ...


class DiscGrader(Protocol):
    """What `grade_slices` needs of a sagittal grader (`lumbar.grader.Grader`): per slice, per
    disc an object with `p_abnormal`, `findings` ({finding: P}), `pfirrmann_probabilities`
    (grades 1-5), `heatmap` (Grad-CAM over the crop, or None) and `crop_corners` (the crop's
    corners in slice pixels: top-left, top-right, bottom-right, bottom-left)."""

    def grade_batch(
        self,
        slices: Sequence[
            tuple[np.ndarray, Sequence[tuple[str, float, float]], tuple[float, float]]
        ],
        *,
        gradcam: bool = False,
    ) -> list[list[Any]]: ...


@dataclass
class DiscResult:
    """One graded disc: where it is (pixels of the graded slice), how sure the localiser is,
    the box drawn around it, and the grader's probabilities.

    `probabilities` maps each binary target (`disc_abnormal`, `bulging`, ...) to P(positive);
    `distributions` maps each multi-class target (`pfirrmann`) to {class: P}. `heatmap` is the
    disc's Grad-CAM on `crop` (both None without Grad-CAM).
    """

    level: str
    x: float
    y: float
    confidence: float
    box: tuple[tuple[float, float], ...]
    probabilities: dict[str, float]
    distributions: dict[str, dict[str, float]] = field(default_factory=dict)
    crop: np.ndarray | None = None
    heatmap: np.ndarray | None = None
    position_mm: tuple[float, float, float] | None = None

    @property
    def p_abnormal(self) -> float:
        """P(disc abnormal): Pfirrmann >= 4, or bulging, or herniation."""
        return self.probabilities["disc_abnormal"]


@dataclass
class SagittalPrediction:
    """The graded discs of one input, on `image` (the slice graded), top to bottom; `unnamed`
    counts discs found but not named or not confident (not graded)."""

    image: np.ndarray
    spacing: tuple[float, float] | None
    discs: list[DiscResult]
    unnamed: int = 0
    slices: int = 1


def disc_boxes(
    discs: Sequence[tuple[str, float, float]], spacing: tuple[float, float] | None
) -> list[tuple[tuple[float, float], ...]]:
    """Each disc's box (4 corners, pixels), sized from the local disc spacing and turned along
    the spine's local axis, so boxes look alike at any field of view or pixel size.

    A slice with one disc uses the image's vertical axis and a spacing of 35 mm (or 1/8 of
    the image height when the pixel size is unknown).
    """
    row_mm, col_mm = spacing if spacing else (1.0, 1.0)
    order = sorted(range(len(discs)), key=lambda i: SPINE_LEVELS.index(discs[i][0]))
    mm = np.array([[discs[i][1] * col_mm, discs[i][2] * row_mm] for i in order], float)
    boxes: list[tuple[tuple[float, float], ...]] = [()] * len(discs)
    for rank, i in enumerate(order):
        neighbours = [mm[j] for j in (rank - 1, rank + 1) if 0 <= j < len(order)]
        gaps = [float(np.linalg.norm(mm[rank] - n)) for n in neighbours]
        gap = float(np.mean(gaps)) if gaps else 0.0
        if gap < 1e-6:
            gap = 35.0 if spacing else 0.125 * max(d[2] for d in discs) + 1.0
        upper = mm[rank - 1] if rank > 0 else mm[rank]
        lower = mm[rank + 1] if rank + 1 < len(order) else mm[rank]
        axis = lower - upper
        norm = float(np.linalg.norm(axis))
        down = axis / norm if norm > 1e-6 else np.array([0.0, 1.0])
        across = np.array([down[1], -down[0]])
        half_w, half_h = 0.5 * BOX_WIDTH * gap, 0.5 * BOX_HEIGHT * gap
        corners = [
            mm[rank] + sx * half_w * across + sy * half_h * down
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
        boxes[i] = tuple((float(c[0] / col_mm), float(c[1] / row_mm)) for c in corners)
    return boxes


def confident(discs: Sequence[Any]) -> list[Any]:
    """The named discs the localiser is confident in (one per level, the surest)."""
    best: dict[str, Any] = {}
    for d in discs:
        if d.level is None or d.level not in SPINE_LEVELS or d.confidence < MIN_CONFIDENCE:
            continue
        if d.level not in best or d.confidence > best[d.level].confidence:
            best[d.level] = d
    return sorted(best.values(), key=lambda d: SPINE_LEVELS.index(d.level))


def _no_discs(found: Sequence[Any]) -> NoConfidentDiscs:
    what = "no discs found" if not found else "no disc found and named with confidence"
    return NoConfidentDiscs(f"{what} (is this a sagittal lumbar spine image?)")


def crop_picture(
    pixels: np.ndarray, corners: Sequence[tuple[float, float]], size: int
) -> np.ndarray:
    """The grader's crop of a disc (its corners in slice pixels) as 8-bit gray, for showing its
    Grad-CAM: (size, size) uint8."""
    from PIL import Image

    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = corners
    quad = (x0 + 0.5, y0 + 0.5, x3 + 0.5, y3 + 0.5, x2 + 0.5, y2 + 0.5, x1 + 0.5, y1 + 0.5)
    source = Image.fromarray(gray_uint8(pixels))
    return np.asarray(
        source.transform((size, size), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR)
    )


def _disc_result(d: Any, g: Any, box: tuple[tuple[float, float], ...], image: SagittalImage,
                 gradcam: bool) -> DiscResult:  # fmt: skip
    heatmap = getattr(g, "heatmap", None) if gradcam else None
    crop = None
    if heatmap is not None and getattr(g, "crop_corners", None):
        crop = crop_picture(image.pixels, g.crop_corners, max(heatmap.shape[0], 96))
    mm = getattr(d, "x_mm", None)
    return DiscResult(
        level=d.level,
        x=float(d.x),
        y=float(d.y),
        confidence=float(d.confidence),
        box=box,
        probabilities={
            "disc_abnormal": float(g.p_abnormal),
            **{k: float(v) for k, v in g.findings.items()},
        },
        distributions={
            "pfirrmann": {
                str(grade): float(p)
                for grade, p in zip(PFIRRMANN_GRADES, g.pfirrmann_probabilities, strict=True)
            }
        },
        crop=crop,
        heatmap=heatmap,
        position_mm=(float(mm), float(d.y_mm), float(d.z_mm)) if mm is not None else None,
    )


def grade_slices(
    finder: DiscFinder,
    grader: DiscGrader,
    groups: Sequence[Sequence[SagittalImage]],
    *,
    gradcam: bool = True,
    combine: Callable[[list[list[Any]], Sequence[SagittalImage]], list[Any]] | None = None,
) -> list[SagittalPrediction | UserError]:
    """Localise every slice of every group in one batch, then grade all their discs in one
    grader batch.

    Args:
        groups: one group per input: an image alone, or a study's central sagittal slices
            (the central one first); discs are graded on the first slice of each.
        combine: `combine(per_slice_discs, group) -> discs` on the group's first slice (the
            localiser's study fusion, patient coordinates for DICOM); default: the first
            slice's discs.

    Returns:
        Per group, its prediction or the UserError that stopped it (the others go on).
    """
    flat = [image for group in groups for image in group]
    found = finder.find([i.pixels for i in flat], [i.spacing for i in flat])
    out: list[SagittalPrediction | UserError | None] = [None] * len(groups)
    todo: list[tuple[int, list[Any], int]] = []
    start = 0
    for n, group in enumerate(groups):
        per_slice = found[start : start + len(group)]
        start += len(group)
        try:
            discs = combine(per_slice, group) if combine is not None else per_slice[0]
        except UserError as err:
            out[n] = err
            continue
        keep = confident(discs)
        if keep:
            todo.append((n, keep, len(discs) - len(keep)))
        else:
            out[n] = _no_discs(discs)
    slices = [
        (
            groups[n][0].pixels,
            [(d.level, float(d.x), float(d.y)) for d in keep],
            groups[n][0].spacing or UNKNOWN_SPACING,
        )
        for n, keep, _ in todo
    ]
    graded = grader.grade_batch(slices, gradcam=gradcam) if slices else []
    for (n, keep, unnamed), (_, points, _), grades in zip(todo, slices, graded, strict=True):
        image = groups[n][0]
        boxes = disc_boxes(points, image.spacing)
        discs = [
            _disc_result(d, g, box, image, gradcam)
            for d, g, box in zip(keep, grades, boxes, strict=True)
        ]
        out[n] = SagittalPrediction(image.pixels, image.spacing, discs, unnamed, len(groups[n]))
    return [r if r is not None else UserError("not graded") for r in out]
