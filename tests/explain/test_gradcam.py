"""Grad-CAM against independent computations, the pointing game, and `lumbar explain`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_run import make_tiny_run
from torch import nn

from lumbar.errors import UserError
from lumbar.explain import (
    ExplainItem,
    GradCAM,
    box_share,
    explain_run,
    load_run,
    point_in_box,
    pointing_game,
    resolve_layer,
)


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


def test_pointing_game_and_random_baseline() -> None:
    heat = np.zeros((10, 10), dtype=np.float32)
    heat[2, 7] = 1.0  # peak at pixel centre (7.5, 2.5) of a 10x10 image; (15, 5) at 20x20
    assert point_in_box(heat, (6, 1, 9, 4), (10, 10)) == (True, (7.5, 2.5))
    assert point_in_box(heat, (14, 4, 16, 6), (20, 20))[0]
    assert not point_in_box(heat, (0, 0, 5, 5), (10, 10))[0]
    assert box_share((0, 0, 5, 5), (10, 10)) == pytest.approx(0.25)
    assert box_share((-5, 5, 5, 20), (10, 10)) == pytest.approx(0.25)  # clipped
    game = pointing_game([heat, heat], [(6, 1, 9, 4), (0, 0, 5, 5)], [(10, 10)] * 2)
    assert (game.hits, game.lesions, game.hit_rate) == (1, 2, 0.5)
    assert game.random_baseline == pytest.approx((0.09 + 0.25) / 2)
    lenient = pointing_game([heat], [(0, 0, 5, 5)], [(10, 10)], tolerance=3)
    assert lenient.hits == 1 and lenient.random_baseline == pytest.approx(0.64)
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game([heat], [(0, 0, 5, 5)], [(10, 10)], tolerance=-1)


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 255, (80, 96), dtype=np.uint8)
        pixels[30:50, 40:60] = 255
        Image.fromarray(pixels).save(folder / f"img{i}.png")
        paths.append(folder / f"img{i}.png")
    return paths


def test_explain_run_with_compare_and_lesions(tmp_path: Path) -> None:
    run_a = make_tiny_run(tmp_path / "a", "mobilenet_v2", seed=0)
    run_b = make_tiny_run(tmp_path / "b", "efficientnet_lite0", seed=1, roi="center:0.8")
    paths = _images(tmp_path / "img", 2)
    items = [ExplainItem(p, p.stem, target=1, box=(10, 10, 40, 40)) for p in paths]
    summary = explain_run(run_a, items, tmp_path / "out", compare=[run_b])
    assert set(summary["runs"]) == {"a", "b"}
    game = summary["runs"]["a"]["pointing_game"]
    assert game["lesions"] == 2 and 0 <= game["hit_rate"] <= 1
    assert game["random_baseline"] == pytest.approx(900 / (96 * 80), abs=1e-4)
    # run b crops the centre 80%: boxes are scored on the 77x64 crop it displays
    assert summary["runs"]["b"]["pointing_game"]["random_baseline"] == pytest.approx(
        900 / (77 * 64), abs=1e-4
    )
    for run in ("a", "b"):
        for p in paths:
            with Image.open(tmp_path / "out" / run / f"{p.stem}.png") as im:
                assert im.mode == "RGB"
    with Image.open(tmp_path / "out" / "compare.png") as im:
        assert im.size[0] > im.size[1]  # 3 columns (image, a, b), 2 rows
    with open(tmp_path / "out" / "explanations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["explained_class"] for r in rows} == {"abnormal"}
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["images"] == 2


def test_explain_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from typer.testing import CliRunner

    from lumbar.cli import app

    run = make_tiny_run(tmp_path / "run")
    paths = _images(tmp_path / "img", 2)
    runner = CliRunner()
    result = runner.invoke(
        app, ["explain", str(run), *map(str, paths), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "explained 2 images" in result.output
    assert (tmp_path / "o" / "run" / "img0.png").is_file()
    bad = runner.invoke(
        app, ["explain", str(tmp_path / "img"), str(paths[0]), "--out", str(tmp_path / "x")]
    )
    assert isinstance(bad.exception, UserError) and "not a run folder" in str(bad.exception)
    neither = runner.invoke(app, ["explain", str(run), "--out", str(tmp_path / "y")])
    assert isinstance(neither.exception, UserError)


def test_incompatible_run_folder_is_a_one_line_error(tmp_path: Path) -> None:
    run = make_tiny_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["backbone"] = "vgg7"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError):
        load_run(run)
    run2 = make_tiny_run(tmp_path / "run2")
    (run2 / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError):
        load_run(run2)
