"""A small ingest-like folder (images.csv and 8 grey PNGs per patient), the input of the
grading app and of `lumbar label`; its `ingest_dir` fixture is shared by tests/labeler and
tests/cli."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lumbar.grading import LEVELS

PATIENTS = ("Paaaa00000001", "Pbbbb00000002", "Pcccc00000003")


def write_ingest(folder: Path, patients: tuple[str, ...] = PATIENTS) -> Path:
    """An ingest-like folder: images.csv and 8 small grey PNGs per patient."""
    rng = np.random.default_rng(0)
    rows = []
    for pid in patients:
        (folder / pid).mkdir(parents=True, exist_ok=True)
        views = [("myelo", "", "1"), ("myelo", "", "2"), ("sagittal_t2", "", "3")]
        views += [("axial_t2", lv.value, lv.code) for lv in LEVELS]
        for view, level, code in views:
            pixels = (rng.random((48, 48)) * 255).astype(np.uint8)
            rel = f"{pid}/{pid}_{code}.png"
            Image.fromarray(pixels).save(folder / rel)
            rows.append(
                {
                    "patient_id": pid,
                    "view": view,
                    "level": level,
                    "image": rel,
                    "source_uid_hash": "0" * 64,
                }
            )
    with open(folder / "images.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.fixture(scope="session")
def ingest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only ingest folder of three patients."""
    return write_ingest(tmp_path_factory.mktemp("ingest"))
