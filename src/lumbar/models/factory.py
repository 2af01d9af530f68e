"""`create_backbone`: a registered architecture with its weights from a named source."""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from torch import nn

from lumbar.models._registry import get_backbone_spec
from lumbar.models.weights import (
    LoadReport,
    WeightSource,
    load_state_dict_from_source,
    load_weights_into,
    resolve_weights,
)

__all__ = ["create_backbone", "feature_grid"]


def create_backbone(
    name: str,
    weights: str | WeightSource = "scratch",
    *,
    num_classes: int = 1000,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered backbone `name` and load `weights` into it.

    Args:
        name: registry name (see `list_backbones()`).
        weights: "imagenet", "scratch", a weights file, a run folder, or a resolved
            `WeightSource`.
        num_classes: size of torchvision's own ImageNet-style head; 0 builds the trunk alone
            (what `build_classifier` uses). A head whose shape differs from the source's stays
            newly initialised.
        **kwargs: architecture options of the model function (e.g. `dropout`, `bn_momentum`).

    Returns:
        The model, in torchvision's layout, with `model.weight_source` (the resolved
        `WeightSource`, whose `preprocessing` the data loader must use) and
        `model.load_report` (a `LoadReport`, or None for scratch).

    Raises:
        UserError: unknown backbone, unknown or unavailable weights, weights that do not fit.

    Example:
        >>> model = create_backbone("efficientnet_lite0", "imagenet")
        >>> model.weight_source.preprocessing.mean
        (127.0, 127.0, 127.0)
    """
    spec = get_backbone_spec(name)
    source = weights if isinstance(weights, WeightSource) else resolve_weights(name, weights)
    state = load_state_dict_from_source(source)  # read first: fail before a slow build
    model = spec.builder(num_classes=num_classes, **kwargs)
    report: LoadReport | None = None
    if state is not None:
        origin = "" if source.path is None else source.path.name
        report = load_weights_into(model, state, name, origin=origin)
    model.weight_source = source
    model.load_report = report
    return model


@cache
def feature_grid(name: str, input_size: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the trunk's feature map for an `input_size` image (7x7 at 224)."""
    with torch.device("meta"):
        trunk = get_backbone_spec(name).builder(num_classes=0)
        out = trunk.eval()(torch.zeros(1, 3, *input_size))
    return int(out.shape[-2]), int(out.shape[-1])
