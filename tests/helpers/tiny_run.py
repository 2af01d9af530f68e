"""Tiny test material: a run folder (config.json + checkpoint.pt) built without the training
code, for the explain / predict / serve / export tests, a learnable manifest of 32 px images
and a fast training configuration for the tests that train."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lumbar import runs
from lumbar.models import WeightSource, build_classifier, save_checkpoint
from lumbar.models.preprocessing import Preprocessing
from lumbar.train import TrainConfig


def make_tiny_run(
    run_dir: Path,
    backbone: str = "mobilenet_v2",
    *,
    size: int = 64,
    roi: str = "none",
    seed: int = 0,
    num_classes: int = 2,
) -> Path:
    """A randomly initialised classifier at `size` x `size` input, saved as a run folder."""
    torch.manual_seed(seed)
    prep = Preprocessing(input_size=(size, size))
    source = WeightSource("scratch", backbone, prep, None, "scratch")
    model = build_classifier(backbone, num_classes, source, hidden=16).eval()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run_dir, model, epoch=1)
    names = ["normal", "abnormal"] if num_classes == 2 else [f"c{i}" for i in range(num_classes)]
    config = {
        **model.config(),
        "target": "disc_abnormal" if num_classes == 2 else "disc_state",
        "class_names": names,
        "roi": roi,
    }
    runs.write_config(run_dir, config)
    return run_dir


SIZE = 32  # side of the images `write_learnable_manifest` writes
LEVELS = ("L3-L4", "L4-L5", "L5-S1")


def write_learnable_manifest(
    folder: Path,
    patients: int = 16,
    levels: Sequence[str] = LEVELS,
    *,
    view: str | None = None,
    blob: tuple[int, int, int, int] = (8, 20, 10, 22),
    brightness: int = 120,
) -> Path:
    """SIZE x SIZE images, one per patient and level, with a manifest split by patient 10/3/3
    (of 16). Grades cycle 0-3; a disc with grade > 0 carries a bright blob at rows
    blob[0]:blob[1], columns blob[2]:blob[3], brightness + 20 x grade above the noise.
    `view` adds a view column."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    view_column = "" if view is None else "view,"
    lines = [f"image,patient_id,{view_column}level,disc_state,split"]
    top, bottom, left, right = blob
    for p in range(patients):
        split = "train" if p < patients * 5 // 8 else ("val" if p < patients * 13 // 16 else "test")
        for k, level in enumerate(levels):
            grade = int((p + k) % 4)
            pixels = rng.integers(0, 60, size=(SIZE, SIZE)).astype(np.uint8)
            if grade > 0:
                pixels[top:bottom, left:right] += np.uint8(brightness + 20 * grade)
            name = f"p{p:02d}_{k}.png"
            Image.fromarray(pixels).save(folder / name)
            view_value = "" if view is None else f"{view},"
            lines.append(f"{name},P{p:02d},{view_value}{level},{grade},{split}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


def tiny(manifest: Path, **overrides: object) -> TrainConfig:
    """A fast `TrainConfig`: MobileNetV2 from scratch at SIZE px, a few epochs, one thread."""
    values: dict = {
        "manifest": str(manifest),
        "backbone": "mobilenet_v2",
        "weights": "scratch",
        "mode": "frozen",
        "epochs": 3,
        "batch_size": 8,
        "lr": 1e-3,
        "input_size": SIZE,
        "hidden": 16,
        "threads": 1,
    }
    values.update(overrides)
    return TrainConfig(**values)


def write_images(folder: Path, n: int) -> list[Path]:
    """`n` random 96x80 grey PNGs with a bright square, the images the explain tests explain."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 255, (80, 96), dtype=np.uint8)
        pixels[30:50, 40:60] = 255
        Image.fromarray(pixels).save(folder / f"img{i}.png")
        paths.append(folder / f"img{i}.png")
    return paths
