"""Counting a network's multiply-accumulates, on the meta device (no memory, no arithmetic).

The figure reported as "GFLOPs" is billions of multiply-accumulates of the convolutions and
fully connected layers for one image, the convention of torchvision's model tables and of the
papers (VGG16 15.5, ResNet50 4.1, MobileNetV2 0.3 at 224x224). Norms, activations, pooling and
additions are left out: together they are under 1% for these networks.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn

from lumbar.models._registry import get_backbone_spec

__all__ = ["backbone_gflops", "count_macs"]


def count_macs(
    model: nn.Module, input_size: tuple[int, int] = (224, 224), channels: int = 3
) -> int:
    """Multiply-accumulates of one forward pass of `model` on one `channels` x H x W image.

    The model may live on any device; the pass runs on meta copies of the shapes only when the
    model is on the meta device, otherwise on a real zero image.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += out[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(
        module: nn.Linear, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor
    ) -> None:
        nonlocal total
        total += out[0].numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total


@cache
def backbone_gflops(name: str, input_size: tuple[int, int] = (224, 224)) -> float:
    """GFLOPs (billions of multiply-accumulates) of the registered backbone `name` with its
    1000-class ImageNet head, for one image of `input_size`; counted, never hard-coded."""
    spec = get_backbone_spec(name)
    with torch.device("meta"):
        model = spec.builder(num_classes=1000)
    return count_macs(model, input_size) / 1e9
