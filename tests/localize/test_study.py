"""DICOM studies: the sagittal T2 series' central slices, fused, in patient coordinates."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lumbar.errors import UserError
from lumbar.ingest.discs import SagittalSeries
from lumbar.localize import Localizer, LocalizerDiscCentres, load_localizer, localize_study
from lumbar.localize.study import central_slices, sagittal_t2_files
from lumbar.synth import synthesize_cohort
from lumbar.synth.protocols import Protocol


@pytest.fixture(scope="module")
def localizer() -> Localizer:
    return load_localizer()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    synthesize_cohort(root, patients=1, seed=3, progress=False)
    return root


def true_centres(cohort: Path) -> dict[str, np.ndarray]:
    with open(cohort / "discs.csv", newline="") as handle:
        return {
            row["level"]: np.array([float(row[k]) for k in ("x_mm", "y_mm", "z_mm")])
            for row in csv.DictReader(handle)
        }


def test_study_discs_lie_at_the_phantoms_true_centres(cohort: Path, localizer: Localizer) -> None:
    study = next(p for p in cohort.iterdir() if p.is_dir())
    result = localize_study(study, localizer)
    assert result.slices == 3
    truth = true_centres(cohort)
    named = {d.level: d for d in result.discs if d.level is not None}
    errors = {
        level: float(np.linalg.norm(np.array([d.x_mm, d.y_mm, d.z_mm]) - truth[level]))
        for level, d in named.items()
        if level in truth
    }
    # discs are about 35 mm apart: within 8 mm is the right disc, well placed
    assert sum(e < 8.0 for e in errors.values()) >= 4, errors
    assert all(0 <= d.confidence <= 1 for d in result.discs)
    # pixel positions are on the central slice: mapping them back gives the same mm
    plane_x = [d.x for d in result.discs]
    assert all(0 <= x < result.image.shape[1] for x in plane_x)


def test_central_slices_start_with_eq1(cohort: Path) -> None:
    study = next(p for p in cohort.iterdir() if p.is_dir())
    files = sagittal_t2_files(study)
    picked = central_slices(files)
    assert len(picked) == 3 and len(set(picked)) == 3
    positions = sorted(float(pydicom.dcmread(p).ImagePositionPatient[0]) for p in files)
    centre = float(pydicom.dcmread(picked[0]).ImagePositionPatient[0])
    assert centre == positions[len(positions) // 2]


def test_disc_centre_source_for_ingest(cohort: Path, localizer: Localizer) -> None:
    study = next(p for p in cohort.iterdir() if p.is_dir())
    source = LocalizerDiscCentres(localizer)
    centres = source(SagittalSeries("uid", "series", tuple(sagittal_t2_files(study))))
    assert {c.level for c in centres} >= {"L3-L4", "L4-L5", "L5-S1"}
    assert source(SagittalSeries("uid", "series")) == []


def test_a_study_without_sagittal_t2_is_one_clear_error(
    tmp_path: Path, localizer: Localizer
) -> None:
    synthesize_cohort(tmp_path, patients=1, seed=4, progress=False, protocol=Protocol.NOSAGT2)
    study = next(p for p in tmp_path.iterdir() if p.is_dir())
    with pytest.raises(UserError, match="no sagittal T2 series"):
        localize_study(study, localizer)


def test_sagittal_images_without_geometry_are_one_clear_error(
    cohort: Path, tmp_path: Path, localizer: Localizer
) -> None:
    study = next(p for p in cohort.iterdir() if p.is_dir())
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    for path in sagittal_t2_files(copy):
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)
    with pytest.raises(UserError, match="PixelSpacing"):
        localize_study(copy, localizer)
