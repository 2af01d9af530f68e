"""Small on-disk fixtures for the data tests: PNG images, an ingest folder, labels, manifests."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest
from helpers.shared_data import REAL_MRI
from PIL import Image

#: Axial T2 slices among the real images (picked by eye from a contact sheet).
REAL_AXIAL = ("mri_00746a9b727e.png", "mri_07ebad8569c2.png")
REAL_CREDIT = (
    "Image: Sudirman et al., Lumbar Spine MRI Dataset, Mendeley Data, "
    "doi:10.17632/k57fr854j2.2, CC BY 4.0"
)
SECRET = "test-secret-0123456789"


def real_images(count: int | None = None) -> list[Path]:
    """Paths of real MRI PNGs; skips the test (visibly) when the shared folder is absent."""
    if not REAL_MRI.is_dir():
        pytest.skip(f"real MRI folder {REAL_MRI} is absent")
    paths = sorted(REAL_MRI.glob("*.png"))
    return paths[:count] if count else paths


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write `array` (uint8/uint16, (H, W) or (H, W, 3)) as a PNG, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def gradient(height: int = 40, width: int = 60, dtype: type = np.uint8) -> np.ndarray:
    """A deterministic, asymmetric test image (so flips are detectable)."""
    top = np.iinfo(dtype).max
    y, x = np.mgrid[0:height, 0:width]
    return ((x * 3 + y) / (3 * (width - 1) + height - 1) * top).astype(dtype)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """Write a CSV file with a header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV as dicts."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


MANIFEST_HEADER = ("image", "patient_id", "level", "view", "disc_state", "scs", "split")


@pytest.fixture
def small_manifest(tmp_path: Path) -> Path:
    """A valid 12-image manifest: 4 patients x 3 levels, both disc classes in every split."""
    rows = []
    splits = {0: "train", 1: "train", 2: "val", 3: "test"}
    for p in range(4):
        for k, level in enumerate(("L3-L4", "L4-L5", "L5-S1")):
            name = f"images/p{p}_{k}.png"
            write_png(tmp_path / name, gradient() // (k + 1))
            state = (p + k) % 4 if k != 1 else 0
            rows.append((name, f"P{p:03d}", level, "axial_t2", state, k, splits[p]))
    return write_csv(tmp_path / "manifest.csv", MANIFEST_HEADER, rows)


@pytest.fixture
def ingest_out(tmp_path: Path) -> tuple[Path, Path]:
    """An ingest-like folder (images.csv, PNGs, secret) for 6 patients and their labels.csv.

    Labels are keyed by the original ids `ORIG-0`..`ORIG-5`, as `lumbar synth` writes them.
    """
    from lumbar.pseudonym import pseudonymize

    folder = tmp_path / "ingest"
    folder.mkdir()
    (folder / ".lumbar-secret").write_text(SECRET + "\n")
    image_rows = []
    label_rows = []
    levels = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
    for p in range(6):
        pseudo = pseudonymize(f"ORIG-{p}", SECRET.encode())
        for view in ("sagittal_t2", "myelo"):
            name = f"{pseudo}/{pseudo}_{view}.png"
            write_png(folder / name, gradient(30, 30))
            image_rows.append((pseudo, view, "", name, f"h{p}{view}"))
        for k, level in enumerate(levels):
            name = f"{pseudo}/{pseudo}_{level}.png"
            write_png(folder / name, gradient(30, 40))
            image_rows.append((pseudo, "axial_t2", level, name, f"h{p}{k}"))
            state = 2 if (p + k) % 3 == 0 else 0
            herniation = 0
            if p == 0 and k == 4:
                state, herniation = 3, 2
            label_rows.append((f"ORIG-{p}", level, state, herniation, k % 2, 0, 0))
    write_csv(
        folder / "images.csv",
        ("patient_id", "view", "level", "image", "source_uid_hash"),
        image_rows,
    )
    labels = write_csv(
        tmp_path / "labels.csv",
        ("patient_id", "level", "disc_state", "herniation", "scs", "rfs", "lfs"),
        label_rows,
    )
    return folder, labels


def run_cli(
    args: Sequence[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Run `lumbar ARGS` in-process; returns (exit code, stdout, stderr)."""
    from lumbar.cli import main

    monkeypatch.setattr(sys, "argv", ["lumbar", *map(str, args)])
    monkeypatch.delenv("LUMBAR_PSEUDONYM_SECRET", raising=False)
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def listing(folder: Path) -> list[str]:
    """Every path under `folder` (relative), hidden ones included, to prove nothing was written."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []
