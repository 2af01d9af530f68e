"""Shared prefix caches: a run that reads or derives its cache equals one computing its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.tiny_run import write_learnable_manifest

from lumbar.experiment.cache import DiskPrefixCache
from lumbar.runs import read_history
from lumbar.train import TrainConfig, train


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_learnable_manifest(tmp_path_factory.mktemp("cache-data"))


def config(manifest: Path, **overrides: object) -> TrainConfig:
    values: dict = {"manifest": str(manifest), "backbone": "mobilenet_v2", "weights": "scratch",
                    "epochs": 2, "batch_size": 8, "input_size": 32, "threads": 2,
                    "aug_variants": 2, "hidden": 16}  # fmt: skip
    return TrainConfig(**{**values, **overrides})


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def same_run(a: Path, b: Path, exact: bool = True) -> None:
    ha, hb = read_history(a), read_history(b)
    keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
    for ra, rb in zip(ha, hb, strict=True):
        for key in keys:
            if exact:
                assert ra[key] == rb[key], key
            else:
                assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), key
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        if exact:
            assert torch.equal(wa[key], wb[key]), key
        else:
            torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-6)


def test_shared_cache_run_equals_own_cache_run(manifest: Path, tmp_path: Path) -> None:
    cache = DiskPrefixCache(tmp_path / "cache")
    cfg = config(manifest, mode="finetune", unfreeze=2, unfreeze_unit="layer")
    train(cfg, tmp_path / "own", progress=False)
    train(cfg, tmp_path / "fills", progress=False, prefix_cache=cache)
    assert cache.fills == 2 and cache.hits == 0  # train and val split
    train(cfg, tmp_path / "reads", progress=False, prefix_cache=cache)
    assert cache.hits == 2
    same_run(tmp_path / "own", tmp_path / "fills")
    same_run(tmp_path / "own", tmp_path / "reads")


def test_frozen_run_derives_its_cache_from_the_finetune_prefix(
    manifest: Path, tmp_path: Path
) -> None:
    """The frozen twin stores the fine-tuned run's shallower prefix on its way (keep_stops);
    a frozen run finding that shallower prefix runs only the remaining stages and the pool."""
    ft = config(manifest, mode="finetune", unfreeze=2, unfreeze_unit="layer")
    frozen = config(manifest, mode="frozen")
    train(frozen, tmp_path / "frozen-own", progress=False)
    from lumbar.experiment.plan import frozen_stop

    stop = frozen_stop("mobilenet_v2", "finetune", 2, "layer")
    cache = DiskPrefixCache(tmp_path / "cache", keep_stops={"mobilenet_v2": [stop]})
    train(frozen, tmp_path / "frozen-keeps", progress=False, prefix_cache=cache)
    same_run(tmp_path / "frozen-own", tmp_path / "frozen-keeps", exact=False)
    # the fine-tuned twin now reads the shallow prefix the frozen run stored
    train(ft, tmp_path / "ft-shared", progress=False, prefix_cache=cache)
    assert cache.hits == 2
    train(ft, tmp_path / "ft-own", progress=False)
    same_run(tmp_path / "ft-own", tmp_path / "ft-shared")
    # derive from the shallow prefix alone: drop the pooled caches
    for path in (tmp_path / "cache").glob("mobilenet_v2-*p-*.pt"):
        path.unlink()
    third = DiskPrefixCache(tmp_path / "cache")
    train(frozen, tmp_path / "frozen-derived", progress=False, prefix_cache=third)
    assert third.derived == 2 and third.fills == 0
    same_run(tmp_path / "frozen-own", tmp_path / "frozen-derived", exact=False)
