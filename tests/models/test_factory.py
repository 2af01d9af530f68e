"""`create_backbone`: a trunk with its weight source attached."""

from __future__ import annotations

import torch

from lumbar.models import create_backbone


def test_create_backbone_scratch_attaches_its_source() -> None:
    model = create_backbone("mobilenet_v2", "scratch", num_classes=3)
    assert model.weight_source.kind == "scratch"
    assert model.load_report is None
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
