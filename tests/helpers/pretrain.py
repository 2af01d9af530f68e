"""Fixtures for the pretraining tests: tiny phantom source / unlabelled sets and a manifest;
helpers both procedures' tests use: a tiny config, a downstream `lumbar train`, a torchrun job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, TypeVar

import pytest

SIZE = 32  # input side of every test run: seconds, not minutes

ConfigT = TypeVar("ConfigT")


def tiny_config(config_class: type[ConfigT], data: Path, **overrides: Any) -> ConfigT:
    """A pretraining config for seconds-long runs: MobileNetV2 at SIZE px, 2 epochs, CPU."""
    values: dict[str, Any] = dict(
        data=[str(data)], backbone="mobilenet_v2", input_size=SIZE, epochs=2, batch_size=8,
        workers=0, threads=1, device="cpu",
    )  # fmt: skip
    values.update(overrides)
    return config_class(**values)


def train_from(run: Path, manifest: Path, out: Path) -> Any:
    """`lumbar train` (1 epoch, frozen, CPU) on `manifest`, starting from the pretraining `run`."""
    from lumbar.train import TrainConfig, train

    config = TrainConfig(
        manifest=str(manifest), backbone="mobilenet_v2", weights=str(run),
        epochs=1, batch_size=8, threads=1, device="cpu",
    )  # fmt: skip
    return train(config, out, progress=False)


def torchrun_pretrain(
    kind: str, data: Path, out: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    """`lumbar pretrain KIND` in two gloo processes: 1 epoch, batch 8, SIZE px, CPU."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "lumbar.cli", "pretrain", kind, "--data", str(data), "--out", str(out),
         "--backbone", "mobilenet_v2", "--input-size", str(SIZE), "--epochs", "1",
         "--batch-size", "8", *options, "--workers", "0", "--device", "cpu", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="session")
def source_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 brain phantoms in 4 class folders with classes.yaml (`lumbar synth --kind source`)."""
    from lumbar.synth.sets import synthesize_source_set

    out = tmp_path_factory.mktemp("source") / "A"
    synthesize_source_set(out, images=16, seed=3)
    return out


@pytest.fixture(scope="session")
def unlabelled_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 unlabelled phantom slices, PNG and extension-less DICOM in nested folders."""
    from lumbar.synth.sets import synthesize_unlabelled_set

    out = tmp_path_factory.mktemp("unlabelled") / "B"
    synthesize_unlabelled_set(out, images=16, seed=5)
    return out


@pytest.fixture(scope="session")
def phantom_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom lumbar dataset (4 patients: synth -> ingest -> dataset build), with a split."""
    from lumbar.data.build import build_dataset
    from lumbar.ingest import IngestOptions, ingest
    from lumbar.synth import synthesize_cohort

    root = tmp_path_factory.mktemp("phantom-ds")
    synthesize_cohort(root / "studies", patients=4, seed=11, workers=1, progress=False)
    ingest(root / "studies", root / "ingest", IngestOptions(workers=1))
    build_dataset(root / "ingest", str(root / "studies" / "labels.csv"), root / "ds")
    return root / "ds" / "manifest.csv"
