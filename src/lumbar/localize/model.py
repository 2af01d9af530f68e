"""The disc localiser network: an EfficientNet-Lite0 trunk, a small FPN, two heat maps, offsets.

The trunk is Lite0 without its 1280-wide head conv (blocks 0-15, strides 2-32); a top-down
feature pyramid brings strides 32, 16 and 8 down to stride 4, where three heads predict:
channel 0 a Gaussian at every disc centre, channel 1 a Gaussian at the L5-S1 disc only (the
anchor the levels are counted up from), channels 2-3 the sub-cell offset of each centre. The
stem takes one gray channel: ImageNet's RGB stem weights summed, which equals feeding the gray
image three times. The stem and the first three blocks (stride <= 4) stay frozen: they hold
generic edge filters and cost most of the backward pass at full resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lumbar.models import efficientnet_lite
from lumbar.models.efficientnet_lite import EfficientNetLite

#: Output stride of the heat maps, in input pixels.
STRIDE = 4
#: Trunk block indices whose outputs feed the pyramid (strides 4, 8, 16, 32) and their widths.
_TAPS = (2, 4, 10, 15)
_TAP_CHANNELS = (24, 40, 112, 320)
#: Blocks up to and including this index stay frozen in training (stride <= 4).
FROZEN_BLOCKS = 2
FPN_CHANNELS = 48


class LocalizerNet(nn.Module):
    """Gray image (N, 1, S, S) in TF-127 units -> (N, 4, S/4, S/4): disc, L5-S1 logits, offsets."""

    def __init__(self) -> None:
        super().__init__()
        trunk = EfficientNetLite(num_classes=0, drop_path_rate=0.1)
        self.stem = efficientnet_lite.Conv2dSame(1, 32, 3, 2)
        self.bn0 = trunk._bn0
        self.blocks = nn.ModuleList(trunk._blocks[: _TAPS[-1] + 1])
        c = FPN_CHANNELS
        self.lateral = nn.ModuleList(nn.Conv2d(k, c, 1) for k in _TAP_CHANNELS)
        self.smooth = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.heat = nn.Conv2d(c, 2, 1)
        self.offset = nn.Conv2d(c, 2, 1)
        nn.init.constant_(self.heat.bias, -2.19)  # CenterNet's prior: sigmoid ~ 0.1 at start
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def load_imagenet(self, state: dict[str, torch.Tensor]) -> None:
        """Copy Lite0 ImageNet tensors (the package's key names) into the trunk."""
        own = self.state_dict()
        for key, value in state.items():
            if key == "_conv_stem.weight":
                own["stem.weight"].copy_(value.sum(dim=1, keepdim=True))
            elif key.startswith("_bn0."):
                own["bn0." + key[len("_bn0.") :]].copy_(value)
            elif key.startswith("_blocks."):
                index = int(key.split(".")[1])
                if index < len(self.blocks):
                    own["blocks." + key[len("_blocks.") :]].copy_(value)

    def frozen_modules(self) -> list[nn.Module]:
        """The stem and the blocks up to FROZEN_BLOCKS: no gradient, BatchNorm in eval mode."""
        return [self.stem, self.bn0, *self.blocks[: FROZEN_BLOCKS + 1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = []
        frozen = self.training
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            x = F.relu6(self.bn0(self.stem(x)))
            for i in range(FROZEN_BLOCKS + 1):
                x = self.blocks[i](x)
        taps.append(x.detach() if frozen else x)
        x = taps[0]
        for i in range(FROZEN_BLOCKS + 1, len(self.blocks)):
            x = self.blocks[i](x)
            if i in _TAPS:
                taps.append(x)
        y = self.lateral[-1](taps[-1])
        for level in range(len(taps) - 2, -1, -1):
            lateral = self.lateral[level](taps[level])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
        y = self.smooth(y)
        return torch.cat([self.heat(y), self.offset(y)], dim=1)
