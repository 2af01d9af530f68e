"""Grad-CAM (`lumbar.explain.gradcam`) against independent computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.tiny_run import make_tiny_run
from torch import nn

from lumbar.errors import UserError
from lumbar.explain import GradCAM, load_run, resolve_layer


class TinyNet(nn.Module):
    """conv -> ReLU -> conv -> in-place ReLU -> pool -> linear: the shape of every backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1)
        )
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def head(self, a: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(a)).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def manual_gradcam(net: TinyNet, x: torch.Tensor, cls: int) -> np.ndarray:
    """Grad-CAM by hand: split the network at the layer, differentiate the class score."""
    a = net.trunk(x).detach().clone().requires_grad_(True)
    score = net.head(a.clone())[:, cls].sum()
    (g,) = torch.autograd.grad(score, a)
    alpha = g.mean(dim=(2, 3), keepdim=True)
    return torch.relu((alpha * a.detach()).sum(1)).numpy()


def test_gradcam_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.randn(3, 1, 16, 16)
    for cls in range(3):
        result = GradCAM(net, net.trunk)(x, cls)
        np.testing.assert_allclose(result.cams, manual_gradcam(net, x, cls), rtol=1e-5, atol=1e-6)
        assert result.heatmaps.shape == (3, 16, 16)
        assert result.heatmaps.min() >= 0 and result.heatmaps.max() <= 1
        assert (result.classes == cls).all()


def test_gradcam_equals_cam_for_a_pooled_linear_head() -> None:
    """With global average pooling and one linear layer, Grad-CAM is CAM (Zhou et al.):
    alpha_k = w_ck / (h w), so the map is ReLU(sum_k w_ck A_k) / (h w)."""
    torch.manual_seed(1)
    trunk = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
    net = nn.Sequential(trunk, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2)).eval()
    x = torch.randn(2, 3, 8, 8)
    result = GradCAM(net, trunk)(x, 1)
    a = trunk(x).detach()
    w = net[3].weight.detach()[1].view(1, -1, 1, 1)
    expected = torch.relu((w * a).sum(1)) / 64.0
    np.testing.assert_allclose(result.cams, expected.numpy(), rtol=1e-5, atol=1e-7)


def test_gradcam_on_a_frozen_classifier_with_inplace_activations(tmp_path: Path) -> None:
    model, _ = load_run(make_tiny_run(tmp_path / "run", "mobilenet_v2", size=64))
    for p in model.parameters():
        p.requires_grad_(False)  # frozen trunk and head: nothing in the graph needs a gradient
    model.train()
    x = torch.randn(2, 3, 64, 64)
    result = GradCAM(model)(x)
    assert model.training and not any(p.requires_grad for p in model.parameters())
    model.eval()
    a = model.forward_features(x).detach().clone().requires_grad_(True)
    logits = model.head(a)
    cls = logits.argmax(1)
    (g,) = torch.autograd.grad(logits.gather(1, cls.view(-1, 1)).sum(), a)
    expected = torch.relu((g.mean((2, 3), keepdim=True) * a.detach()).sum(1))
    np.testing.assert_allclose(result.cams, expected.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.logits, logits.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert (result.classes == cls.numpy()).all()


def test_layers_and_bad_arguments(tmp_path: Path) -> None:
    model, _ = load_run(make_tiny_run(tmp_path / "run", "efficientnet_lite0", size=64))
    assert resolve_layer(model, "last_conv") is model.last_conv
    assert resolve_layer(model, None) is model.feature_layer
    assert GradCAM(model, "last_conv")(torch.randn(1, 3, 64, 64)).cams.shape == (1, 2, 2)
    with pytest.raises(UserError, match="unknown Grad-CAM layer"):
        GradCAM(model, "no.such.layer")
    with pytest.raises(ValueError, match="out of range"):
        GradCAM(model)(torch.randn(1, 3, 64, 64), 5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        GradCAM(model)(torch.randn(3, 64, 64))
