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

__all__ = ["BUNDLED_MODEL", "DiscResult", "Grader", "Member", "load_grader", "save_grader"]

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
    """Crops -> two logits (0, calibrated disc_abnormal logit of one member), for Grad-CAM of
    p_abnormal. The level one-hot and, with the context input, the mean features of each
    crop's slice are held fixed (the map explains the crop itself)."""

    def __init__(
        self, member: Member, trunk: FeatureTrunk, levels: np.ndarray, slice_mean: np.ndarray
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.member = member
        self.levels = torch.from_numpy(levels).double()
        self.slice_mean = torch.from_numpy(slice_mean).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.member
        full = self.trunk(x, m.variant.grid)
        columns = torch.from_numpy(m.columns)
        parts = [torch.cat([full[:, columns], full[:, sum(TAP_WIDTHS) :]], 1).double()]
        if m.recipe.context:
            parts.append(parts[0] - self.slice_mean)
        if m.recipe.level:
            parts.append(self.levels)
        feats = torch.cat(parts, dim=1)
        head = m.head
        cols = head.columns("disc_abnormal")
        z = (feats - torch.from_numpy(head.mean)) / torch.from_numpy(head.scale)
        logit = z @ torch.from_numpy(head.weight[:, cols]) + torch.from_numpy(head.bias[cols])
        logit = logit / head.temperature.get("disc_abnormal", 1.0)
        return torch.cat([torch.zeros_like(logit), logit], dim=1).float()


class Member:
    """One model of a grader: a crop variant, its recipe and its fitted, calibrated head."""

    def __init__(self, head: MultiTaskHead, recipe: Recipe) -> None:
        if len(recipe.variants) != 1:
            raise ValueError("a grader member crops each disc one way (one crop variant)")
        self.head = head
        self.recipe = recipe
        self.variant: CropVariant = recipe.variants[0]
        self.columns = tap_columns(recipe.taps)

    def crops(
        self, image: np.ndarray, geometry: list[Any], spacing: tuple[float, float], flip: bool
    ) -> np.ndarray:
        """This member's crops of one slice's discs."""
        v = self.variant
        crops = crop_discs(
            image, geometry, spacing, size=v.size, scale=v.scale, align=v.align, flip=flip
        )
        return stretch_crops(crops) if v.contrast == "crop" else crops

    def design(self, features: np.ndarray, levels: Sequence[str], groups: np.ndarray) -> np.ndarray:
        """The head's input from the trunk's features (as `lumbar.grader.recipe.design`)."""
        parts = [select_columns(features, self.recipe.taps)]
        if self.recipe.context:
            parts.append(slice_centred(parts[0], groups))
        if self.recipe.level:
            parts.append(level_onehot(levels))
        return np.concatenate(parts, axis=1)

    def corners(self, g: Any, spacing: tuple[float, float]) -> tuple[tuple[float, float], ...]:
        """The crop's corners in slice pixels (as `crop_discs` samples it)."""
        side = self.variant.scale * g.spacing_mm
        ax, ay = g.axis if self.variant.align else (0.0, 1.0)
        corners = []
        for u, v in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
            x_mm = g.centre_mm[0] + side * (u * ay + v * ax)
            y_mm = g.centre_mm[1] + side * (-u * ax + v * ay)
            corners.append((x_mm / spacing[1], y_mm / spacing[0]))
        return tuple(corners)


class Grader:
    """A loaded grader: the frozen trunk and one or more members (an ensemble over crop
    sizes averages its members' calibrated probabilities), ready for `grade`."""

    def __init__(self, members: Sequence[Member], backbone: str = "efficientnet_lite0"):
        if not members:
            raise ValueError("a grader needs at least one member")
        self.members = list(members)
        self.trunk = FeatureTrunk(backbone, DEFAULT_TAPS)

    @property
    def variant(self) -> CropVariant:
        """The first member's crop (the one Grad-CAM and the crop corners refer to)."""
        return self.members[0].variant

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
            gradcam: add each disc's Grad-CAM of p_abnormal (the first member's; slower: a
                backward pass).

        Raises:
            UserError: an image that is not 2-D (or RGB), an unknown level, a level twice on
                one slice, or a non-positive pixel spacing.
        """
        prepared = []
        levels: list[str] = []
        owner: list[int] = []
        for i, (image, discs, spacing) in enumerate(slices):
            pixels = _as_uint8(image)
            spacing = (float(spacing[0]), float(spacing[1]))
            try:
                geometry = disc_geometry(discs, spacing)
            except ValueError as err:
                raise UserError(str(err)) from None
            prepared.append((pixels, geometry, spacing))
            levels += [d[0] for d in discs]
            owner += [i] * len(discs)
        out: list[list[DiscResult]] = [[] for _ in slices]
        if not levels:
            return out
        groups = np.asarray(owner)
        probs: dict[str, np.ndarray] = {}
        first_crops = first_features = None
        for m in self.members:
            crops = np.concatenate([m.crops(p, g, sp, False) for p, g, sp in prepared])
            features = self.trunk.features(crops, batch_size, m.variant.grid)
            raw = m.head.raw_logits(m.design(features, levels, groups))
            if m.recipe.tta:
                mirrored = np.concatenate([m.crops(p, g, sp, True) for p, g, sp in prepared])
                flipped = self.trunk.features(mirrored, batch_size, m.variant.grid)
                raw = (raw + m.head.raw_logits(m.design(flipped, levels, groups))) / 2
            logits = {
                t: raw[:, m.head.columns(t)] / m.head.temperature.get(t, 1.0)
                for t in m.head.targets
            }
            for t, p in logits_to_probabilities(logits).items():
                probs[t] = probs.get(t, 0) + p / len(self.members)
            if first_crops is None:
                first_crops, first_features = crops, features
        heatmaps = None
        if gradcam:
            m = self.members[0]
            base = select_columns(first_features, m.recipe.taps)
            slice_mean = base - slice_centred(base, groups)
            heatmaps = self._gradcam(m, first_crops, levels, slice_mean, batch_size)
        geometry = [(g, sp) for _, gs, sp in prepared for g in gs]
        flat = [d for _, discs, _ in slices for d in discs]
        for n, (level, cx, cy) in enumerate(flat):
            pf = tuple(float(p) for p in probs["pfirrmann"][n])
            out[owner[n]].append(
                DiscResult(
                    level=str(level), x=float(cx), y=float(cy),
                    p_abnormal=float(probs["disc_abnormal"][n]),
                    findings={t: float(probs[t][n]) for t in SAGITTAL_FINDINGS if t in probs},
                    pfirrmann_probabilities=pf,
                    pfirrmann=PFIRRMANN_GRADES[int(np.argmax(pf))],
                    heatmap=None if heatmaps is None else heatmaps[n],
                    crop_corners=self.members[0].corners(*geometry[n]),
                )
            )  # fmt: skip
        return out

    def _gradcam(
        self, m: Member, crops: Any, levels: Sequence[str], slice_mean: np.ndarray,
        batch_size: int,
    ) -> np.ndarray:  # fmt: skip
        maps = []
        for i in range(0, len(crops), batch_size):
            part = slice(i, i + batch_size)
            net = _AbnormalLogits(m, self.trunk, level_onehot(levels[part]), slice_mean[part])
            cam = GradCAM(net, self.trunk.feature_layer)
            maps.append(cam(self.trunk.normalise(crops[part]), target=1).heatmaps)
        return np.concatenate(maps)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[..., :3].mean(axis=2)
    if array.ndim != 2:
        raise UserError(f"expected a 2-D grayscale slice, got an array of shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    return stretch_to_uint8(array)


def save_grader(
    path: Path, members: Sequence[tuple[MultiTaskHead, Recipe]], about: dict[str, Any]
) -> Path:
    """Write a model file: each member's head in fp16 (safetensors, keys m<i>.<name>) and its
    recipe, targets and temperatures, with `about`, as metadata."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    described = []
    for i, (head, recipe) in enumerate(members):
        if len(recipe.variants) != 1:
            raise ValueError("a grader member crops each disc one way (one crop variant)")
        for name, value in (
            ("feature_mean", head.mean), ("feature_scale", head.scale),
            ("weight", head.weight), ("bias", head.bias),
        ):  # fmt: skip
            tensors[f"m{i}.{name}"] = torch.from_numpy(np.asarray(value)).half().contiguous()
        described.append(
            {
                "variant": asdict(recipe.variants[0]),
                "taps": list(recipe.taps),
                "level": recipe.level,
                "tta": recipe.tta,
                "context": recipe.context,
                "targets": list(head.targets),
                "temperature": head.temperature,
                "l2": head.l2,
            }
        )
    metadata = {
        "format": FORMAT,
        "members": json.dumps(described),
        "about": json.dumps(about, default=str),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_grader(model: Path | None = None, members: Sequence[int] | None = None) -> Grader:
    """The grader in `model` (a file or folder from `lumbar grader train`), or the bundled one
    (None); `members` keeps only those members (by index), e.g. [1] for the bundled model's
    crop-1.0 member alone: a third of the compute, each member being calibrated on its own.

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
    members_kept, members = members, []
    for i, spec in enumerate(json.loads(meta["members"])):
        recipe = Recipe(
            variants=(CropVariant(**spec["variant"]),), taps=tuple(spec["taps"]),
            level=bool(spec["level"]), tta=bool(spec["tta"]), context=bool(spec["context"]),
        )  # fmt: skip
        targets = tuple(spec["targets"])
        weight = tensors[f"m{i}.weight"]
        if weight.shape[1] != sum(TARGET_WIDTHS[t] for t in targets):
            raise UserError(f"{path.name}: its weights do not match its targets")
        head = MultiTaskHead(
            tensors[f"m{i}.feature_mean"], tensors[f"m{i}.feature_scale"], weight,
            tensors[f"m{i}.bias"], targets, spec["l2"], spec["temperature"],
        )  # fmt: skip
        members.append(Member(head, recipe))
    if members_kept is not None:
        try:
            members = [members[i] for i in members_kept]
        except IndexError:
            raise UserError(f"{path.name} has {len(members)} members") from None
    return Grader(members)
