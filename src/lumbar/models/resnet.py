"""ResNet50 (He et al. 2016, torchvision's "v1.5": stride 2 in the 3x3 convolution).

The module tree matches torchvision's `resnet50` (`conv1`, `bn1`, `layer1`..`layer4` of
`Bottleneck` blocks with `downsample.0/1`, `fc`), so torchvision's ImageNet `.pth` files load
with `strict=True`.
"""

from __future__ import annotations

import torch
from torch import nn

from lumbar.models._registry import register_backbone, torchvision_weights

__all__ = ["Bottleneck", "ResNet", "resnet50"]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, plus the identity or a projected shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with bottleneck blocks, torchvision's layout.

    Args:
        blocks_per_stage: bottlenecks in layer1..layer4 ((3, 4, 6, 3) for ResNet50).
        num_classes: outputs of the ImageNet-style head (`avgpool` + `fc`); 0 builds the trunk.
    """

    def __init__(self, blocks_per_stage: tuple[int, int, int, int], num_classes: int = 1000):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = 64
        stages = []
        for index, (planes, blocks) in enumerate(
            zip((64, 128, 256, 512), blocks_per_stage, strict=True)
        ):
            stride = 1 if index == 0 else 2
            layers = [Bottleneck(in_channels, planes, stride)]
            in_channels = planes * Bottleneck.expansion
            layers += [Bottleneck(in_channels, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        if num_classes > 0:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(in_channels, num_classes)
        # torchvision's initialisation (zero_init_residual=False); nn.Linear keeps its default.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The trunk as an ordered list of (name, module); applied in turn = `forward_features`."""
        out: list[tuple[str, nn.Module]] = [
            ("conv1", self.conv1),
            ("bn1", self.bn1),
            ("relu", self.relu),
            ("maxpool", self.maxpool),
        ]
        for layer_name in ("layer1", "layer2", "layer3", "layer4"):
            layer = getattr(self, layer_name)
            out += [(f"{layer_name}.{i}", block) for i, block in enumerate(layer)]
        return out

    def blocks(self) -> list[tuple[str, list[nn.Module]]]:
        """The stem, then each bottleneck block (Keras' conv2_block1 .. conv5_block3)."""
        out: list[tuple[str, list[nn.Module]]] = [("stem", [self.conv1, self.bn1])]
        for layer_name in ("layer1", "layer2", "layer3", "layer4"):
            layer = getattr(self, layer_name)
            out += [(f"{layer_name}.{i}", [block]) for i, block in enumerate(layer)]
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output: (N, 2048, H/32, W/32), the output of `layer4`."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        if self.num_classes == 0:
            return x
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_backbone(
    feature_dim=2048,
    last_conv="layer4.2.conv3",
    feature_layer="layer4",
    paper=True,
    imagenet=torchvision_weights("resnet50-0676ba61.pth", "0676ba61", 76.130),
)
def resnet50(*, num_classes: int = 1000) -> ResNet:
    """ResNet50: 16 bottleneck blocks in 4 stages, 25.6 M parameters with its head."""
    return ResNet((3, 4, 6, 3), num_classes=num_classes)
