"""Grad-CAM (the paper's section 5, Figures 17-18): where a classifier looked.

Grad-CAM (Selvaraju et al. 2017) weights each channel k of a convolutional feature map A by the
spatial mean of d score_c / d A_k and keeps the positive part of the weighted sum:

    cam_c = ReLU( sum_k alpha_k^c A_k ),   alpha_k^c = mean_ij d y_c / d A_k[i, j]

`GradCAM` computes it at a classifier's feature layer (the trunk's output, the usual target) or
its last convolution, or any named module. The trunks use in-place ReLUs, which would overwrite
a hooked activation before the backward pass; the hook therefore takes the activation as a
leaf of its own and hands the rest of the network a copy, so frozen trunks (no parameter needs
a gradient) work too.

`lumbar explain` (`lumbar.explain.run`) draws the maps over the images (`lumbar.visualize`) and,
on phantom data where the generator knows each lesion's box, scores them with the pointing
game (`lumbar.explain.pointing`).

Example:
    >>> cam = GradCAM(model)                       # a lumbar.models.Classifier
    >>> result = cam(images)                       # (N, C, H, W) normalised inputs
    >>> result.heatmaps.shape                      # (N, H, W), each in [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lumbar.errors import UserError

__all__ = ["LAYER_ALIASES", "CamResult", "GradCAM", "resolve_layer"]

LAYER_ALIASES: tuple[str, ...] = ("features", "last_conv")


def resolve_layer(model: nn.Module, layer: str | nn.Module | None = None) -> nn.Module:
    """The module Grad-CAM hooks: "features" (default: the trunk's output), "last_conv", a
    module path inside the model (e.g. "backbone.features.17"), or a module itself.

    Raises:
        UserError: an unknown alias or module path.
    """
    if isinstance(layer, nn.Module):
        return layer
    name = layer or "features"
    if name == "features" and hasattr(model, "feature_layer"):
        return model.feature_layer  # type: ignore[no-any-return]
    if name == "last_conv" and hasattr(model, "last_conv"):
        return model.last_conv  # type: ignore[no-any-return]
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise UserError(
            f"unknown Grad-CAM layer {name!r}; use {', '.join(LAYER_ALIASES)} or a module path "
            "such as backbone.features.17"
        ) from None


@dataclass
class CamResult:
    """Grad-CAM of one batch.

    Attributes:
        heatmaps: (N, H, W) float32 in [0, 1] at the input size (each map divided by its max;
            an all-zero map stays zero).
        cams: (N, h, w) float32, unnormalised, at the feature map's size.
        logits: (N, num_classes) float32.
        probabilities: (N, num_classes) softmax of the logits.
        classes: (N,) the class each map explains.
    """

    heatmaps: np.ndarray
    cams: np.ndarray
    logits: np.ndarray
    probabilities: np.ndarray
    classes: np.ndarray


class GradCAM:
    """Grad-CAM of a classifier at one layer.

    Args:
        model: a `torch.nn.Module` mapping (N, C, H, W) to logits (N, num_classes); a
            `lumbar.models.Classifier` resolves the "features" / "last_conv" aliases.
        layer: see `resolve_layer`.

    The model is used in inference mode (BatchNorm statistics, no dropout); its parameters'
    `requires_grad` flags and its training mode are left as they were.
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None) -> None:
        self.model = model
        self.layer = resolve_layer(model, layer)

    def __call__(
        self, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None
    ) -> CamResult:
        """Grad-CAM of `images` for class `target`: one int, one per image (a negative entry
        means that image's predicted class), or None for each image's predicted class."""
        if images.ndim != 4:
            raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(images.shape)}")
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
            # A leaf of our own: later in-place ops (ReLU(inplace=True)) change only the copy.
            leaf = output.detach().requires_grad_(True)
            captured.append(leaf)
            return leaf.clone()

        was_training = self.model.training
        # Only the part after the hooked layer needs a graph: parameters are switched off so
        # the trunk's forward pass records nothing (faster, far less memory).
        flags = [(p, p.requires_grad) for p in self.model.parameters()]
        handle = self.layer.register_forward_hook(hook)
        try:
            for param, _ in flags:
                param.requires_grad_(False)
            self.model.eval()
            with torch.enable_grad():
                logits = self.model(images)
                if len(captured) != 1:
                    raise RuntimeError(
                        f"Grad-CAM layer ran {len(captured)} times in one forward pass; "
                        "choose a layer that runs once"
                    )
                activation = captured[0]
                n = logits.shape[0]
                predicted = logits.detach().argmax(dim=1)
                if target is None:
                    classes = predicted
                else:
                    classes = torch.as_tensor(target, dtype=torch.long).reshape(-1).expand(n)
                    if int(classes.max()) >= logits.shape[1]:
                        raise ValueError(
                            f"class {classes.tolist()} out of range for {logits.shape[1]} classes"
                        )
                    classes = torch.where(classes < 0, predicted, classes)
                score = logits.gather(1, classes.view(-1, 1)).sum()
                (grads,) = torch.autograd.grad(score, activation)
        finally:
            handle.remove()
            for param, flag in flags:
                param.requires_grad_(flag)
            self.model.train(was_training)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cams = torch.relu((weights * activation.detach()).sum(dim=1))
        heat = nn.functional.interpolate(
            cams[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
        peak = heat.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
        heat = (heat / peak).clamp_(0.0, 1.0)
        logits = logits.detach()
        return CamResult(
            heatmaps=heat.numpy().astype(np.float32),
            cams=cams.numpy().astype(np.float32),
            logits=logits.numpy().astype(np.float32),
            probabilities=torch.softmax(logits, dim=1).numpy().astype(np.float32),
            classes=classes.numpy().astype(np.int64),
        )
