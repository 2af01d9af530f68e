"""Experiment config: one-line errors naming the bad key, paths relative to the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.experiment import write_config

from lumbar.errors import UserError
from lumbar.experiment.config import load_experiment_config

BASE = """
datasets:
  main: {manifest: data/manifest.csv}
procedures:
  - procedure: 1
    backbones: [mobilenet_v2]
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    return load_experiment_config(write_config(tmp_path / "exp.yaml", text))


def test_minimal_config_resolves_paths_relative_to_the_file(tmp_path: Path) -> None:
    cfg = load(tmp_path, BASE)
    assert cfg.datasets["main"].manifest == (tmp_path / "data" / "manifest.csv").resolve()
    block = cfg.blocks[0]
    assert block.dataset == "main" and block.modes == ("frozen", "finetune")
    assert block.backbones == (("mobilenet_v2", ("imagenet",)),)
    assert cfg.seeds == (0,) and cfg.name == "exp"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: red\n" + BASE, "unknown key(s) colour; known: name, seeds"),
        (BASE + "    train: {epoch: 3}\n", "procedures[0].train: unknown key(s) epoch; known:"),
        ("train: {backbone: vgg16}\n" + BASE, "backbone is set by the grid"),
        (BASE.replace("mobilenet_v2", "alexnet"), "unknown backbone 'alexnet'"),
        (BASE + "    sources: [dataset_a]\n", "unknown source 'dataset_a'"),
        (BASE + "    modes: [frozen, tuned]\n", "'tuned' is not frozen or finetune"),
        (BASE + "    rois: [circle]\n", "procedures[0].rois"),
        (BASE.replace("{manifest: data/manifest.csv}", "{}"), "give exactly one of manifest"),
        ("folds: 1\n" + BASE, "folds: must be 0"),
        (
            "pretrain:\n  dataset_a: {kind: supervised}\n" + BASE,
            "give exactly one of data: (folders) or synth:",
        ),
        ("procedures: []\ndatasets: {main: {manifest: m.csv}}\n", "procedures: is required"),
        ("datasets: [1, 2\n", "is not valid YAML"),
    ],
)
def test_bad_config_is_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        load(tmp_path, text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_every_train_field_can_be_overridden_globally_and_per_block(tmp_path: Path) -> None:
    text = "train: {epochs: 7, lr: 0.01, unfreeze: 2}\n" + BASE + "    train: {lr: 0.5}\n"
    block = load(tmp_path, text).blocks[0]
    assert block.train == {"epochs": 7, "lr": 0.5, "unfreeze": 2}


@pytest.mark.parametrize("spelling", ["unlabelled", "unlabeled"])
def test_pretraining_on_unlabelled_images_in_either_spelling(tmp_path: Path, spelling: str) -> None:
    text = f"pretrain:\n  dataset_b: {{kind: {spelling}, data: [b/]}}\n" + BASE
    source = load(tmp_path, text).pretrain["dataset_b"]
    assert source.kind == "unlabelled" and source.method == "simclr"
