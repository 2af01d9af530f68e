"""The SPIDER discs as the grader sees them: one row per boxed disc, its targets, its crops and
their frozen features (cached per crop variant, since the trunk never changes).

Rows follow `lumbar.data.spider.read_spider`: slices in file order, discs top to bottom, so
every benchmark, CV fold and the bundled model's training use the same rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lumbar.data.imageio import read_uint8
from lumbar.data.spider import SpiderSlice
from lumbar.files import atomic_path
from lumbar.grader.crops import crop_discs, disc_geometry
from lumbar.grader.features import FeatureTrunk
from lumbar.grading import SAGITTAL_TARGETS, SPINE_LEVELS, sagittal_targets

__all__ = ["CropVariant", "DiscRows", "disc_rows", "slice_crops", "spider_features"]


@dataclass(frozen=True)
class CropVariant:
    """How a disc is cropped: side `size` pixels, `scale` x the local disc spacing, turned to
    the spine's axis (`align`), mirrored (`flip`), and with `contrast` "image" (the slice's own
    8-bit values) or "crop" (each crop stretched so its 1st-99th percentiles span 0-255); `grid`
    adds features pooled over a 3 x 3 grid of the crop (`FeatureTrunk.forward`)."""

    size: int = 224
    scale: float = 1.5
    align: bool = True
    flip: bool = False
    contrast: str = "image"
    grid: bool = False

    @property
    def key(self) -> str:
        """A file-name-safe name, e.g. `s1.5-224-align-image` (+ `-flip`)."""
        parts = [f"s{self.scale:g}", str(self.size), "align" if self.align else "axes"]
        parts.append(self.contrast)
        if self.grid:
            parts.append("grid")
        if self.flip:
            parts.append("flip")
        return "-".join(parts)

    def flipped(self) -> CropVariant:
        """The same variant mirrored."""
        return replace(self, flip=not self.flip)


@dataclass(frozen=True)
class DiscRows:
    """Every boxed disc of a set of slices, one row each.

    Attributes:
        patient, sequence, level: per row (strings).
        slice_index: the row's slice in the list given to `disc_rows`.
        targets: {target: (N,) int64} for `lumbar.grading.SAGITTAL_TARGETS` (pfirrmann 1-5).
    """

    patient: np.ndarray
    sequence: np.ndarray
    level: np.ndarray
    slice_index: np.ndarray
    targets: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.level)

    def level_onehot(self) -> np.ndarray:
        """(N, len(SPINE_LEVELS)) one-hot of each row's level."""
        return level_onehot(self.level)


def level_onehot(levels: Sequence[str] | np.ndarray) -> np.ndarray:
    """(N, len(SPINE_LEVELS)) float32 one-hot of level names."""
    out = np.zeros((len(levels), len(SPINE_LEVELS)), np.float32)
    for i, level in enumerate(levels):
        out[i, SPINE_LEVELS.index(str(level))] = 1.0
    return out


def disc_rows(slices: Sequence[SpiderSlice]) -> DiscRows:
    """One row per disc of `slices`, in order, with the grader's targets."""
    patient, sequence, level, index = [], [], [], []
    targets: dict[str, list[int]] = {t: [] for t in SAGITTAL_TARGETS}
    for i, s in enumerate(slices):
        for d in s.discs:
            patient.append(s.patient)
            sequence.append(s.sequence)
            level.append(d.level)
            index.append(i)
            for name, value in sagittal_targets(d.grades).items():
                targets[name].append(value)
    return DiscRows(
        np.array(patient),
        np.array(sequence),
        np.array(level),
        np.array(index, dtype=np.int64),
        {k: np.array(v, dtype=np.int64) for k, v in targets.items()},
    )


def stretch_crops(crops: np.ndarray) -> np.ndarray:
    """Each crop's 1st-99th percentile mapped onto 0-255 (clipped): contrast "crop"."""
    low = np.percentile(crops, 1, axis=(1, 2), keepdims=True)
    high = np.percentile(crops, 99, axis=(1, 2), keepdims=True)
    return np.clip((crops - low) * (255.0 / np.maximum(high - low, 1e-3)), 0, 255)


def slice_crops(
    image: np.ndarray,
    discs: Sequence[tuple[str, float, float]],
    spacing_mm: tuple[float, float],
    variant: CropVariant,
) -> np.ndarray:
    """The crops of `discs` on one slice as `variant` says: (N, size, size) float32."""
    geometry = disc_geometry(discs, spacing_mm)
    crops = crop_discs(
        image, geometry, spacing_mm, size=variant.size, scale=variant.scale,
        align=variant.align, flip=variant.flip,
    )  # fmt: skip
    return stretch_crops(crops) if variant.contrast == "crop" else crops


def _fingerprint(slices: Sequence[SpiderSlice], trunk: FeatureTrunk) -> str:
    text = repr(
        (
            trunk.backbone_name,
            trunk.taps,
            [(s.image.name, s.spacing_mm, [(d.level, d.centre) for d in s.discs]) for s in slices],
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def spider_features(
    slices: Sequence[SpiderSlice],
    variant: CropVariant,
    trunk: FeatureTrunk,
    cache_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Frozen features (N rows of `disc_rows(slices)`, D) of every disc crop of `slices`.

    With `cache_dir`, read from / written to `<cache_dir>/<variant.key>-<fingerprint>.npy`
    (the fingerprint covers the backbone, its taps and the discs), so each variant is computed
    once however many experiments use it.
    """
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{variant.key}-{_fingerprint(slices, trunk)}.npy"
        if path.is_file():
            return np.load(path)
    parts = []
    for s in slices:
        image = read_uint8(s.image)
        if image.ndim == 3:
            image = image.mean(axis=2)
        discs = [(d.level, d.centre[0], d.centre[1]) for d in s.discs]
        crops = slice_crops(image, discs, s.spacing_mm, variant)
        parts.append(trunk.features(crops, grid=variant.grid))
        if progress is not None:
            progress(len(discs))
    features = np.concatenate(parts).astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, features)
    return features
