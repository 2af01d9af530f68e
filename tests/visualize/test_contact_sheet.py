"""The contact sheet: one row per patient, the 8 selected images in the paper's order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lumbar.visualize.contact_sheet import LABEL_HEIGHT, PSEUDONYM_WIDTH, THUMB, write_contact_sheet

CODES = ("1", "2", "3", "12", "23", "34", "45", "51")


def _patient(folder: Path, pseudonym: str, codes: tuple[str, ...], value: int) -> list:
    (folder / pseudonym).mkdir(parents=True)
    images = []
    for code in codes:
        path = folder / pseudonym / f"{pseudonym}_{code}.png"
        Image.fromarray(np.full((60, 40), value, dtype=np.uint8)).save(path)
        images.append((pseudonym, path))
    return images


def test_rows_per_patient_and_columns_in_the_papers_order(tmp_path: Path) -> None:
    images = _patient(tmp_path, "Paaaaaaaaaaaa", CODES, 200)
    images += _patient(tmp_path, "Pbbbbbbbbbbbb", CODES[:3], 90)  # no axial images
    target = tmp_path / "out" / "sheet.png"
    assert write_contact_sheet(images, target) == 2
    sheet = np.asarray(Image.open(target).convert("L"))
    assert sheet.shape == (LABEL_HEIGHT + 2 * (THUMB + LABEL_HEIGHT), PSEUDONYM_WIDTH + 8 * THUMB)
    first = LABEL_HEIGHT + 10  # inside the 60 x 40 thumbnails (small images are not enlarged)
    for column in range(8):  # the first patient has all eight images, drawn in place
        assert sheet[first, PSEUDONYM_WIDTH + column * THUMB + 10] == 200
    second = first + THUMB + LABEL_HEIGHT
    assert sheet[second, PSEUDONYM_WIDTH + 2 * THUMB + 10] == 90
    assert sheet[second, PSEUDONYM_WIDTH + 7 * THUMB + 10] == 0  # L5-S1: "missing"


def test_at_most_max_patients(tmp_path: Path) -> None:
    images = []
    for i in range(3):
        images += _patient(tmp_path, f"P{i:012x}", CODES[:1], 50)
    assert write_contact_sheet(images, tmp_path / "sheet.png", max_patients=2) == 2
