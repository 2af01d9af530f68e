"""VGG16 and VGG19 (Simonyan & Zisserman 2015), two of the paper's four backbones.

The module tree matches torchvision's `vgg16` / `vgg19` exactly (`features.N`, `avgpool`,
`classifier.N`), so torchvision's ImageNet `.pth` files load with `strict=True`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lumbar.models._registry import register_backbone, torchvision_weights

__all__ = ["VGG", "make_vgg_features", "vgg16", "vgg19"]

# Output channels of each 3x3 convolution; "M" is a 2x2 max-pool. Configuration D is VGG16,
# E is VGG19 (Table 1 of the VGG paper, as in torchvision).
_CONFIGS: dict[str, list[int | Literal["M"]]] = {
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", *([256] * 4), "M", *([512] * 4), "M", *([512] * 4), "M"],
}


def make_vgg_features(config: list[int | Literal["M"]]) -> nn.Sequential:
    """The convolutional trunk: 3x3 conv + ReLU per channel count, a 2x2 max-pool per "M"."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [
                nn.Conv2d(in_channels, item, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
            ]
            in_channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG with torchvision's layout: `features` (trunk), `avgpool` to 7x7, `classifier` (MLP).

    Args:
        features: the convolutional trunk (see `make_vgg_features`).
        num_classes: outputs of the ImageNet-style head; 0 builds the trunk alone (no
            `avgpool`/`classifier`, so 120 M head parameters are never allocated).
        dropout: dropout probability inside the ImageNet-style head.
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.num_classes = num_classes
        if num_classes > 0:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, num_classes),
            )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so `scratch` training starts where torchvision's would.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output: (N, 512, H/32, W/32), after the last max-pool."""
        return self.features(x)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The trunk as an ordered list of (name, module); applied in turn = `forward_features`."""
        return [(f"features.{i}", layer) for i, layer in enumerate(self.features)]

    def blocks(self) -> list[tuple[str, list[nn.Module]]]:
        """The five conv blocks, as Keras names them (block1..block5), each ending in a pool."""
        out: list[tuple[str, list[nn.Module]]] = []
        current: list[nn.Module] = []
        for layer in self.features:
            current.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                out.append((f"block{len(out) + 1}", current))
                current = []
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        if self.num_classes == 0:
            return x
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)


@register_backbone(
    feature_dim=512,
    last_conv="features.28",
    feature_layer="features.30",
    paper=True,
    imagenet=torchvision_weights(
        "vgg16-397923af.pth",
        "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        71.592,
    ),
)
def vgg16(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """VGG16 (configuration D): 13 convolutions in 5 blocks, 138.4 M parameters with its head."""
    return VGG(make_vgg_features(_CONFIGS["D"]), num_classes=num_classes, dropout=dropout)


@register_backbone(
    feature_dim=512,
    last_conv="features.34",
    feature_layer="features.36",
    paper=True,
    imagenet=torchvision_weights("vgg19-dcbb9e9d.pth", "dcbb9e9d", 72.376),
)
def vgg19(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    """VGG19 (configuration E): 16 convolutions in 5 blocks, 143.7 M parameters with its head."""
    return VGG(make_vgg_features(_CONFIGS["E"]), num_classes=num_classes, dropout=dropout)
