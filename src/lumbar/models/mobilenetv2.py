"""MobileNetV2 (Sandler et al. 2018), width 1.0, the paper's fourth backbone.

The module tree matches torchvision's `mobilenet_v2` (`features.0`..`features.18`, each
`InvertedResidual` holding a `conv` Sequential, `classifier.1`), so torchvision's ImageNet `.pth`
files load with `strict=True`.
"""

from __future__ import annotations

import torch
from torch import nn

from lumbar.models._registry import register_backbone, torchvision_weights

__all__ = ["ConvBNReLU6", "InvertedResidual", "MobileNetV2", "mobilenet_v2"]

# (expansion t, output channels c, repeats n, first stride s): Table 2 of the paper.
_INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never below 90% of `value` (as TF does)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias, "same" padding) -> BatchNorm -> ReLU6; torchvision's
    `Conv2dNormActivation` with the same child indices (0, 1, 2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
    ):
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                (kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise (3x3, strided), project (1x1, linear); residual when shapes agree."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = round(in_channels * expand_ratio)
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2, torchvision's layout.

    Args:
        num_classes: outputs of the ImageNet-style head (dropout + linear on the pooled
            features); 0 builds the trunk alone.
        dropout: dropout probability of that head.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.num_classes = num_classes
        in_channels = _make_divisible(32)
        last_channels = _make_divisible(1280)
        features: list[nn.Module] = [ConvBNReLU6(3, in_channels, stride=2)]
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            out_channels = _make_divisible(c)
            for i in range(n):
                features.append(InvertedResidual(in_channels, out_channels, s if i == 0 else 1, t))
                in_channels = out_channels
        features.append(ConvBNReLU6(in_channels, last_channels, kernel_size=1))
        self.features = nn.Sequential(*features)
        if num_classes > 0:
            self.classifier = nn.Sequential(
                nn.Dropout(p=dropout), nn.Linear(last_channels, num_classes)
            )
        # torchvision's initialisation.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The trunk as an ordered list of (name, module); applied in turn = `forward_features`."""
        return [(f"features.{i}", block) for i, block in enumerate(self.features)]

    def blocks(self) -> list[tuple[str, list[nn.Module]]]:
        """The stem conv, the 17 inverted residuals, the last 1x1 conv: `features.0`..`18`."""
        return [(f"features.{i}", [block]) for i, block in enumerate(self.features)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output: (N, 1280, H/32, W/32), after the last 1x1 conv and ReLU6."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        if self.num_classes == 0:
            return x
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.classifier(x)


@register_backbone(
    feature_dim=1280,
    last_conv="features.18.0",
    feature_layer="features.18",
    paper=True,
    imagenet=torchvision_weights("mobilenet_v2-b0353104.pth", "b0353104", 71.878),
)
def mobilenet_v2(*, num_classes: int = 1000, dropout: float = 0.2) -> MobileNetV2:
    """MobileNetV2 (width 1.0): 17 inverted-residual blocks, 3.5 M parameters with its head."""
    return MobileNetV2(num_classes=num_classes, dropout=dropout)
