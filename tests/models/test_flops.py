"""Multiply-adds of every backbone at 224 x 224, against the published figures."""

from __future__ import annotations

import pytest
from helpers.torchvision_reference import GFLOPS

from lumbar.models import backbone_gflops, list_backbones

BACKBONES = list_backbones()


@pytest.mark.parametrize("name", BACKBONES)
def test_gflops_are_counted(name: str) -> None:
    gflops = backbone_gflops(name)
    if name in GFLOPS:
        assert gflops == pytest.approx(GFLOPS[name], rel=0.01)
    else:
        assert 0.01 < gflops < 100


def test_efficientnet_lite0_gflops() -> None:
    # Lite0 has no squeeze-excitation and so a little fewer MACs than B0 (0.39 vs 0.40).
    assert backbone_gflops("efficientnet_lite0") == pytest.approx(0.385, abs=0.01)
