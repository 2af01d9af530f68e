"""One row of facts per registered backbone, for `lumbar models` and for reports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lumbar.models._registry import get_backbone_spec, list_backbones
from lumbar.models.flops import backbone_gflops
from lumbar.models.preprocessing import CAFFE, IMAGENET, TF_127, Preprocessing
from lumbar.models.weights import imagenet_weights_available, imagenet_weights_path

__all__ = [
    "WEIGHT_SOURCE_KINDS",
    "BackboneSummary",
    "backbone_summaries",
    "describe_preprocessing",
]

#: The kinds of weight source every backbone accepts (DESIGN.md, "Weights").
WEIGHT_SOURCE_KINDS: tuple[str, ...] = ("imagenet", "file", "run", "scratch")

_KNOWN = {
    IMAGENET: "RGB 0-1, ImageNet mean/std",
    CAFFE: "Caffe: BGR 0-255 - mean",
    TF_127: "RGB (x - 127) / 128",
}


def describe_preprocessing(prep: Preprocessing) -> str:
    """A short human description of a preprocessing, e.g. "RGB (x - 127) / 128"."""
    size = "" if prep.input_size == (224, 224) else f" at {prep.input_size[0]}x{prep.input_size[1]}"
    known = _KNOWN.get(prep)
    if known is None:
        stats = "/".join(f"{m:g}" for m in prep.mean), "/".join(f"{s:g}" for s in prep.std)
        known = f"{prep.channels.upper()} 0-{prep.pixel_range:g}, mean {stats[0]}, std {stats[1]}"
    return known + size


@dataclass(frozen=True)
class BackboneSummary:
    """What `lumbar models` shows about one backbone.

    Attributes:
        params: parameters with the 1000-class ImageNet head (torchvision's figure).
        gflops: multiply-accumulates (billions) at 224x224 with that head, counted.
        imagenet_path: where the ImageNet file is or must be put.
        imagenet_available: whether that file is on this machine.
    """

    name: str
    paper: bool
    feature_dim: int
    params: int
    gflops: float
    imagenet_file: str
    imagenet_path: Path
    imagenet_available: bool
    imagenet_origin: str
    imagenet_top1: float | None
    preprocessing: str
    imagenet_package: str | None


def backbone_summaries() -> list[BackboneSummary]:
    """A summary of every registered backbone, built on the meta device (no weights touched)."""
    rows = []
    for name in list_backbones():
        spec = get_backbone_spec(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in spec.builder(num_classes=1000).parameters())
        prep = spec.imagenet.preprocessing
        rows.append(
            BackboneSummary(
                name=name,
                paper=spec.paper,
                feature_dim=spec.feature_dim,
                params=params,
                gflops=backbone_gflops(name),
                imagenet_file=spec.imagenet.file_name,
                imagenet_path=imagenet_weights_path(name),
                imagenet_available=imagenet_weights_available(name),
                imagenet_origin=spec.imagenet.origin,
                imagenet_top1=spec.imagenet.top1,
                preprocessing=describe_preprocessing(prep),
                imagenet_package=spec.imagenet.package,
            )
        )
    return rows
