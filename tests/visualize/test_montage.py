from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lumbar.errors import UserError
from lumbar.visualize.montage import read_study, windowed, write_study_montage


def test_montage_of_a_phantom_patient(phantom_cohort: Path, tmp_path: Path):
    out = tmp_path / "montage.png"
    write_study_montage(phantom_cohort / "patient-0001", out, phantom_cohort / "labels.csv")
    image = np.asarray(Image.open(out).convert("L"))
    assert image.shape[0] > 800 and image.shape[1] > 800
    assert image.std() > 20  # pictures, not an empty canvas
    assert not list(tmp_path.glob("*.part"))


def test_read_study_groups_and_orders_series(phantom_cohort: Path):
    series = read_study(phantom_cohort / "patient-0002")
    names = {s.description for s in series}
    assert {"T2 AX", "T2 SAG", "MYELO"} <= names
    axial = next(s for s in series if s.description == "T2 AX")
    assert [im.instance for im in axial.images] == list(range(1, 26))


def test_windowing_uses_window_tags_or_percentiles():
    pixels = np.arange(100, dtype=np.uint16).reshape(10, 10)
    mapped = windowed(pixels, (50.0, 20.0))
    assert mapped[0, 0] == 0.0 and mapped[-1, -1] == 1.0 and 0 < mapped[5, 0] < 1
    auto = windowed(pixels, None)
    assert auto.min() == 0.0 and auto.max() == 1.0


def test_montage_of_a_folder_without_dicom(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match="no readable DICOM images"):
        write_study_montage(tmp_path, tmp_path / "m.png")
