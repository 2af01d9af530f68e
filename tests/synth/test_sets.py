"""Pretraining image sets: the source domain's class folders and the unlabelled MRI tree."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from lumbar.errors import UserError
from lumbar.synth import tissue as T
from lumbar.synth.brain import SOURCE_CLASSES, paint_brain
from lumbar.synth.canvas import Canvas, Grid
from lumbar.synth.imaging import Signals
from lumbar.synth.sets import synthesize_source_set, synthesize_unlabelled_set


def test_source_set_layout_and_class_map(tmp_path: Path):
    out = tmp_path / "source"
    summary = synthesize_source_set(out, images=9, seed=1)
    assert summary.images == 9
    counts = {c: len(list((out / c).glob("*.png"))) for c in SOURCE_CLASSES}
    assert sum(counts.values()) == 9 and min(counts.values()) == 2
    classes = dict(
        line.split(": ")
        for line in (out / "classes.yaml").read_text().splitlines()
        if not line.startswith("#")
    )
    assert classes == {
        "glioma": "abnormal",
        "meningioma": "abnormal",
        "pituitary": "abnormal",
        "no_tumor": "normal",
    }
    image = Image.open(next((out / "glioma").glob("*.png")))
    assert image.mode == "L" and min(image.size) >= 256


def test_source_set_is_deterministic(tmp_path: Path):
    synthesize_source_set(tmp_path / "a", images=4, seed=3)
    synthesize_source_set(tmp_path / "b", images=4, seed=3)
    for path in (tmp_path / "a").rglob("*.png"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


@pytest.mark.parametrize("kind", ["glioma", "meningioma", "pituitary"])
def test_tumours_change_the_brain(kind):
    grid = Grid((128, 128), 2.0)
    sig = Signals(T.Sequence(te=100, tr=4000))

    def render(k):
        canvas = Canvas(grid)
        paint_brain(canvas, sig, k, np.random.default_rng(4), height=0.5)
        return canvas.image

    normal, tumour = render("no_tumor"), render(kind)
    changed = np.abs(normal - tumour) > 0.05
    assert 10 < changed.sum() < 0.3 * changed.size  # a focal lesion, not a different image


def test_unlabelled_set_mixes_png_and_dicom_in_a_tree(tmp_path: Path):
    out = tmp_path / "unlabelled"
    summary = synthesize_unlabelled_set(out, images=40, seed=2)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert summary.images == len(files) == 40
    pngs = [p for p in files if p.suffix == ".png"]
    dicoms = [p for p in files if p.suffix == ""]
    assert pngs and dicoms
    assert all(pydicom.dcmread(p, stop_before_pixels=True).Modality == "MR" for p in dicoms)
    assert not list(out.rglob("*.csv"))  # no labels of any kind


def test_bad_counts(tmp_path: Path):
    with pytest.raises(UserError, match="at least 4"):
        synthesize_source_set(tmp_path / "s", images=3)
    with pytest.raises(UserError, match="at least 1"):
        synthesize_unlabelled_set(tmp_path / "u", images=0)
    assert not list(tmp_path.iterdir())


def test_cli_kinds(tmp_path: Path):
    run = [sys.executable, "-m", "lumbar.cli", "synth"]
    ok = subprocess.run(
        [*run, str(tmp_path / "s"), "--kind", "source", "--images", "4"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "wrote 4 source images" in ok.stdout
    bad = subprocess.run(
        [*run, str(tmp_path / "x"), "--kind", "knee"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown --kind 'knee'")
