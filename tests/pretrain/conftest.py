"""Fixtures for the pretraining tests: tiny phantom source / unlabelled sets and a manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

SIZE = 32  # input side of every test run: seconds, not minutes


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
