"""The sagittal grader as a model: load it once, grade the discs of many slices in batches.

    >>> grader = load_grader()                       # the bundled model (None) or a file
    >>> results = grader.grade(image, [("L4-L5", 250.0, 310.0), ...], spacing_mm=(0.7, 0.7))
    >>> results[0].p_abnormal, results[0].pfirrmann_probabilities

A model file (safetensors) holds the head (standardisation, linear map, temperatures) in fp16
and, as metadata, the recipe that made it (crop variant, tapped depths, level input, test-time
flips). The trunk is not in it: it is the frozen ImageNet EfficientNet-Lite0 that
`lumbar.models` loads offline, rebuilt here from the same source.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lumbar.data.imageio import stretch_to_uint8
from lumbar.errors import UserError
from lumbar.explain.gradcam import GradCAM
from lumbar.files import atomic_path
from lumbar.grader.crops import crop_discs, disc_geometry
from lumbar.grader.data import CropVariant, level_onehot, stretch_crops
from lumbar.grader.features import DEFAULT_TAPS, FeatureTrunk
from lumbar.grader.head import TARGET_WIDTHS, MultiTaskHead, logits_to_probabilities
from lumbar.grader.recipe import TAP_WIDTHS, Recipe, select_columns, slice_centred, tap_columns
from lumbar.grading import PFIRRMANN_GRADES, SAGITTAL_FINDINGS

__all__ = ["BUNDLED_MODEL", "DiscResult", "Grader", "load_grader", "save_grader"]

#: The bundled model, trained on all of SPIDER's sagittal set (see MODEL_CARD.md beside it).
BUNDLED_MODEL = Path(__file__).resolve().parent / "weights" / "grader.safetensors"
FORMAT = "lumbar-sagittal-grader/1"

Disc = tuple[str, float, float]


@dataclass
class DiscResult:
    """The grades of one disc.

    Attributes:
        level, x, y: as given (x, y in pixels of the slice).
        p_abnormal: calibrated P(disc_abnormal: Pfirrmann >= 4, bulging or herniation).
        findings: calibrated P(finding) of each of `lumbar.grading.SAGITTAL_FINDINGS`.
        pfirrmann_probabilities: calibrated P(grade) for Pfirrmann 1..5.
        pfirrmann: the most probable grade.
        heatmap: Grad-CAM of p_abnormal over the crop ((size, size) in [0, 1]) when asked.
        crop_corners: the crop's corners in slice pixels (top-left, top-right, bottom-right,
            bottom-left of the crop as the model saw it), to draw the heatmap over the slice.
    """

    level: str
    x: float
    y: float
    p_abnormal: float
    findings: dict[str, float]
    pfirrmann_probabilities: tuple[float, ...]
    pfirrmann: int
    heatmap: np.ndarray | None = None
    crop_corners: tuple[tuple[float, float], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the heatmap left out)."""
        out = asdict(self)
        out.pop("heatmap")
        out["pfirrmann_probabilities"] = list(self.pfirrmann_probabilities)
        out["crop_corners"] = [list(c) for c in self.crop_corners]
        return out


class _AbnormalLogits(nn.Module):
    """Crops -> two logits (0, calibrated disc_abnormal logit), for Grad-CAM of p_abnormal.

    The level one-hot and, with the context input, the mean features of each crop's slice are
    held fixed (the map explains the crop itself)."""

    def __init__(self, grader: Grader, levels: np.ndarray, slice_mean: np.ndarray) -> None:
        super().__init__()
        self.trunk = grader.trunk
        self.grader = grader
        self.levels = torch.from_numpy(levels).double()
        self.slice_mean = torch.from_numpy(slice_mean).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.grader
        full = self.trunk(x, g.variant.grid)
        parts = [torch.cat([full[:, torch.from_numpy(g.columns)], full[:, g.extra :]], 1).double()]
        if g.recipe.context:
            parts.append(parts[0] - self.slice_mean)
        if g.recipe.level:
            parts.append(self.levels)
        feats = torch.cat(parts, dim=1)
        head = g.head
        cols = head.columns("disc_abnormal")
        z = (feats - torch.from_numpy(head.mean)) / torch.from_numpy(head.scale)
        logit = z @ torch.from_numpy(head.weight[:, cols]) + torch.from_numpy(head.bias[cols])
        logit = logit / head.temperature.get("disc_abnormal", 1.0)
        return torch.cat([torch.zeros_like(logit), logit], dim=1).float()


class Grader:
    """A loaded grader: the frozen trunk and the head, ready for `grade`."""

    def __init__(self, head: MultiTaskHead, recipe: Recipe, backbone: str = "efficientnet_lite0"):
        if len(recipe.variants) != 1:
            raise ValueError("a grader model crops each disc one way (one crop variant)")
        self.head = head
        self.recipe = recipe
        self.variant: CropVariant = recipe.variants[0]
        self.trunk = FeatureTrunk(backbone, DEFAULT_TAPS)
        self.columns = tap_columns(recipe.taps)
        self.extra = sum(TAP_WIDTHS)  # grid-pooled columns start here

    def _crops(self, image: np.ndarray, discs: Sequence[Disc], spacing: tuple[float, float],
               flip: bool) -> tuple[np.ndarray, list[Any]]:  # fmt: skip
        geometry = disc_geometry(discs, spacing)
        v = self.variant
        crops = crop_discs(
            image, geometry, spacing, size=v.size, scale=v.scale, align=v.align, flip=flip
        )
        if v.contrast == "crop":
            crops = stretch_crops(crops)
        return crops, geometry

    def grade(
        self,
        image: np.ndarray,
        discs: Sequence[Disc],
        spacing_mm: tuple[float, float],
        *,
        gradcam: bool = False,
    ) -> list[DiscResult]:
        """Grade the discs (level, x, y) of one sagittal slice (see `grade_batch`)."""
        return self.grade_batch([(image, discs, spacing_mm)], gradcam=gradcam)[0]

    def grade_batch(
        self,
        slices: Sequence[tuple[np.ndarray, Sequence[Disc], tuple[float, float]]],
        *,
        gradcam: bool = False,
        batch_size: int = 32,
    ) -> list[list[DiscResult]]:
        """Grade the discs of many slices, their crops batched together through the trunk.

        Args:
            slices: (image, discs, spacing_mm) per slice: a 2-D grayscale image (uint8 as is;
                other types stretched min-max to 8 bits; RGB averaged), its discs as
                (level, x, y) with x, y in pixels, and its (row, column) pixel spacing in mm.
            gradcam: add each disc's Grad-CAM of p_abnormal (slower: a backward pass).

        Raises:
            UserError: an image that is not 2-D (or RGB), an unknown level, a level twice on
                one slice, or a non-positive pixel spacing.
        """
        crops, flips, geometry, levels, owner = [], [], [], [], []
        for i, (image, discs, spacing) in enumerate(slices):
            pixels = _as_uint8(image)
            spacing = (float(spacing[0]), float(spacing[1]))
            try:
                c, g = self._crops(pixels, discs, spacing, flip=False)
                if self.recipe.tta:
                    flips.append(self._crops(pixels, discs, spacing, flip=True)[0])
            except ValueError as err:
                raise UserError(str(err)) from None
            crops.append(c)
            geometry += [(geo, spacing, pixels.shape) for geo in g]
            levels += [d[0] for d in discs]
            owner += [i] * len(discs)
        out: list[list[DiscResult]] = [[] for _ in slices]
        if not levels:
            return out
        all_crops = np.concatenate(crops)
        groups = np.asarray(owner)
        grid = self.variant.grid
        features = self.trunk.features(all_crops, batch_size, grid)
        raw = self.head.raw_logits(self._design(features, levels, groups))
        if self.recipe.tta:
            mirrored = self.trunk.features(np.concatenate(flips), batch_size, grid)
            raw = (raw + self.head.raw_logits(self._design(mirrored, levels, groups))) / 2
        logits = {
            t: raw[:, self.head.columns(t)] / self.head.temperature.get(t, 1.0)
            for t in self.head.targets
        }
        probs = logits_to_probabilities(logits)
        heatmaps = None
        if gradcam:
            base = select_columns(features, self.recipe.taps)
            slice_mean = base - slice_centred(base, groups)
            heatmaps = self._gradcam(all_crops, levels, slice_mean, batch_size)
        flat = [d for _, discs, _ in slices for d in discs]
        for n, (level, cx, cy) in enumerate(flat):
            pf = tuple(float(p) for p in probs["pfirrmann"][n])
            out[owner[n]].append(
                DiscResult(
                    level=str(level),
                    x=float(cx),
                    y=float(cy),
                    p_abnormal=float(probs["disc_abnormal"][n]),
                    findings={t: float(probs[t][n]) for t in SAGITTAL_FINDINGS if t in probs},
                    pfirrmann_probabilities=pf,
                    pfirrmann=PFIRRMANN_GRADES[int(np.argmax(pf))],
                    heatmap=None if heatmaps is None else heatmaps[n],
                    crop_corners=self._corners(*geometry[n]),
                )
            )
        return out

    def _design(
        self, features: np.ndarray, levels: Sequence[str], groups: np.ndarray
    ) -> np.ndarray:
        parts = [select_columns(features, self.recipe.taps)]
        if self.recipe.context:
            parts.append(slice_centred(parts[0], groups))
        if self.recipe.level:
            parts.append(level_onehot(levels))
        return np.concatenate(parts, axis=1)

    def _gradcam(
        self, crops: np.ndarray, levels: Sequence[str], slice_mean: np.ndarray, batch_size: int
    ) -> np.ndarray:
        maps = []
        for i in range(0, len(crops), batch_size):
            part = slice(i, i + batch_size)
            net = _AbnormalLogits(self, level_onehot(levels[part]), slice_mean[part])
            cam = GradCAM(net, self.trunk.feature_layer)
            maps.append(cam(self.trunk.normalise(crops[part]), target=1).heatmaps)
        return np.concatenate(maps)

    def _corners(
        self, g: Any, spacing: tuple[float, float], shape: tuple[int, int]
    ) -> tuple[tuple[float, float], ...]:
        side = self.variant.scale * g.spacing_mm
        ax, ay = g.axis if self.variant.align else (0.0, 1.0)
        corners = []
        for u, v in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
            x_mm = g.centre_mm[0] + side * (u * ay + v * ax)
            y_mm = g.centre_mm[1] + side * (-u * ax + v * ay)
            corners.append((x_mm / spacing[1], y_mm / spacing[0]))
        return tuple(corners)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[..., :3].mean(axis=2)
    if array.ndim != 2:
        raise UserError(f"expected a 2-D grayscale slice, got an array of shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    return stretch_to_uint8(array)


def save_grader(path: Path, head: MultiTaskHead, recipe: Recipe, about: dict[str, Any]) -> Path:
    """Write a model file: the head in fp16 (safetensors), the recipe and `about` as metadata."""
    from safetensors.torch import save_file

    tensors = {
        "feature_mean": torch.from_numpy(head.mean).half(),
        "feature_scale": torch.from_numpy(head.scale).half(),
        "weight": torch.from_numpy(head.weight).half(),
        "bias": torch.from_numpy(head.bias).half(),
    }
    metadata = {
        "format": FORMAT,
        "targets": json.dumps(list(head.targets)),
        "temperature": json.dumps(head.temperature),
        "l2": json.dumps(head.l2),
        "recipe": json.dumps(
            {
                "variant": asdict(recipe.variants[0]),
                "taps": list(recipe.taps),
                "level": recipe.level,
                "tta": recipe.tta,
                "context": recipe.context,
            }
        ),
        "about": json.dumps(about, default=str),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return path


def load_grader(model: Path | None = None) -> Grader:
    """The grader in `model` (a file from `lumbar grader train`), or the bundled one (None).

    Raises:
        UserError: the file is missing or is not a grader model.
    """
    from safetensors import SafetensorError, safe_open

    path = BUNDLED_MODEL if model is None else Path(model)
    if path.is_dir():
        path = path / "grader.safetensors"
    if not path.is_file():
        raise UserError(f"no grader model at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("format") != FORMAT:
                raise UserError(f"{path.name} is not a lumbar sagittal grader model")
            tensors = {k: handle.get_tensor(k).double().numpy() for k in handle.keys()}  # noqa: SIM118
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # not safetensors
        raise UserError(f"cannot read grader model {path.name}: {err}".splitlines()[0]) from None
    spec = json.loads(meta["recipe"])
    recipe = Recipe(
        variants=(CropVariant(**spec["variant"]),), taps=tuple(spec["taps"]),
        level=bool(spec["level"]), tta=bool(spec["tta"]), context=bool(spec.get("context")),
    )  # fmt: skip
    targets = tuple(json.loads(meta["targets"]))
    if tensors["weight"].shape[1] != sum(TARGET_WIDTHS[t] for t in targets):
        raise UserError(f"{path.name}: its weights do not match its targets")
    head = MultiTaskHead(
        tensors["feature_mean"], tensors["feature_scale"], tensors["weight"], tensors["bias"],
        targets, json.loads(meta.get("l2", "{}")), json.loads(meta["temperature"]),
    )  # fmt: skip
    return Grader(head, recipe)
