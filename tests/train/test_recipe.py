"""`lumbar train --recipe`: the paper's settings unchanged, the regularised recipe's head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.tiny_run import SIZE, tiny, write_learnable_manifest

from lumbar.errors import UserError
from lumbar.models import load_classifier
from lumbar.train import TrainConfig, train
from lumbar.train.config import WEIGHT_DECAYS


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_learnable_manifest(tmp_path_factory.mktemp("recipe-data"))


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def test_paper_recipe_is_the_published_settings() -> None:
    cfg = TrainConfig(manifest="m.csv", recipe="paper").resolved()
    assert (cfg.hidden, cfg.dropout, cfg.augmentation) == (256, 0.2, "paper")
    assert cfg.standardize is False and cfg.weight_decay == 0.0 and cfg.class_weights
    assert TrainConfig(manifest="m.csv").resolved() == cfg  # the default
    reg = TrainConfig(manifest="m.csv", recipe="regularized").resolved()
    assert (reg.hidden, reg.dropout, reg.augmentation) == (0, 0.0, "hflip")
    assert reg.standardize is True and reg.weight_decay is None and reg.class_weights
    kept = TrainConfig(manifest="m.csv", recipe="regularized", hidden=32).resolved()
    assert kept.hidden == 32  # a setting given wins over the recipe's
    with pytest.raises(UserError, match="recipe must be paper or regularized"):
        TrainConfig(manifest="m.csv", recipe="fancy").resolved()


def test_paper_recipe_equals_the_explicit_old_defaults(manifest: Path, tmp_path: Path) -> None:
    """`--recipe paper` trains exactly what the settings before `--recipe` trained: the same
    weights bit for bit, the same history and a config.json without new model keys."""
    paper = train(tiny(manifest, recipe="paper", dropout=0.2), tmp_path / "a", progress=False)
    old = train(
        tiny(manifest, dropout=0.2, augmentation="paper", weight_decay=0.0, standardize=False),
        tmp_path / "b",
        progress=False,
    )
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any("feature_mean" in k for k in a)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in paper.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in old.history]
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert "standardize" not in config and "weight_decay_search" not in config


def test_regularized_recipe_standardises_and_chooses_weight_decay(
    manifest: Path, tmp_path: Path
) -> None:
    run = tmp_path / "reg"
    result = train(tiny(manifest, recipe="regularized", hidden=None), run, progress=False)
    config = json.loads((run / "config.json").read_text())
    assert config["standardize"] is True and config["hidden"] == 0
    search = config["weight_decay_search"]
    assert set(search) == {f"{d:g}" for d in WEIGHT_DECAYS}
    chosen = config["train"]["weight_decay"]
    assert search[f"{chosen:g}"] == min(search.values())
    assert not any(p.name.startswith(".wd-") for p in tmp_path.iterdir())  # scratch removed
    state = _state(run)
    mean, scale = state["head.feature_mean"], state["head.feature_scale"]
    assert mean.abs().sum() > 0 and not torch.allclose(scale, torch.ones_like(scale))
    model = load_classifier(run)  # the standardisation travels with the run folder
    assert torch.equal(model.head.feature_mean, mean)
    assert model(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 2)
    assert result.metrics["test"]["roc_auc"] is not None
