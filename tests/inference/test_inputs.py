"""`lumbar predict`'s inputs: kinds, reading a slice, safe and unique names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lumbar.errors import UserError
from lumbar.inference.inputs import (
    InputKind,
    UniqueNames,
    classify_input,
    read_sagittal_image,
    safe_stem,
)


def test_kinds_and_bad_inputs(tmp_path: Path) -> None:
    png = tmp_path / "slice.png"
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(png)
    assert classify_input(str(png)).kind is InputKind.IMAGE
    assert classify_input(str(tmp_path)).kind is InputKind.STUDY
    url = "http://pacs:8042/dicom-web/studies/1.2.3"
    assert classify_input(url) == classify_input(url) and classify_input(url).kind is InputKind.URL
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not an image"):
        classify_input(str(tmp_path / "notes.txt"))
    with pytest.raises(UserError, match="no such file or folder"):
        classify_input(str(tmp_path / "gone.png"))


def test_read_png_and_damaged_files(tmp_path: Path) -> None:
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.full((40, 50, 3), 100, np.uint8)).save(rgb)
    image = read_sagittal_image(rgb)
    assert image.pixels.shape == (40, 50) and image.spacing is None and image.plane is None
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    with pytest.raises(UserError, match="cannot read the image"):
        read_sagittal_image(broken)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tiny)
    with pytest.raises(UserError, match="not a usable 2-D image"):
        read_sagittal_image(tiny)


def test_read_dicom_slice_with_geometry(phantom_cohort: Path) -> None:
    import pydicom

    for path in sorted((phantom_cohort / "patient-0001").rglob("*")):
        if path.is_file() and "SAG" in str(
            pydicom.dcmread(path, stop_before_pixels=True).SeriesDescription
        ):
            break
    image = read_sagittal_image(path)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert image.plane is not None
    assert image.spacing == tuple(float(v) for v in header.PixelSpacing)
    assert image.pixels.shape == (header.Rows, header.Columns)


def test_names_are_safe_and_unique() -> None:
    assert safe_stem("Müller, Hans (1952)") == "M_ller_Hans_1952"
    assert safe_stem("../..") == "input" and safe_stem(".hidden") == "hidden"
    name = UniqueNames()
    assert [name(n) for n in ["a", "b", "a", "a-2", "a"]] == ["a", "b", "a-2", "a-2-2", "a-3"]
