"""Image sets for pretraining (the paper's Procedures 2 and 3), made by the phantom generator.

- `synthesize_source_set`: a labelled source domain laid out like the public brain-tumour
  collections (one folder per class: glioma, meningioma, pituitary, no_tumor) with
  `classes.yaml` grouping them into normal / abnormal as the paper does for its Dataset A.
- `synthesize_unlabelled_set`: unlabelled MRI in a nested folder tree, PNG and DICOM mixed
  (lumbar axial and sagittal slices of phantom studies, and brain slices), like Dataset B.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lumbar.errors import UserError
from lumbar.files import staged_dir, write_text_atomic
from lumbar.synth import tissue as T
from lumbar.synth.brain import NORMAL_CLASS, SOURCE_CLASSES, TUMOUR_CLASSES, paint_brain
from lumbar.synth.canvas import Canvas, Grid
from lumbar.synth.imaging import Scanner, Signals, texture_bank

CLASS_MAP_FILE = "classes.yaml"


@dataclass(frozen=True)
class SetSummary:
    """What a set writer wrote."""

    images: int
    seconds: float


def _brain_image(rng: np.random.Generator, kind: str, bank: np.ndarray) -> np.ndarray:
    """One brain slice as 8-bit gray pixels, with a random sequence, matrix and scanner."""
    weighting = rng.choice(["t2", "t1", "pd"])
    if weighting == "t2":
        sequence = T.Sequence(te=float(rng.uniform(85, 110)), tr=float(rng.uniform(3000, 5000)))
    elif weighting == "t1":
        sequence = T.Sequence(te=float(rng.uniform(8, 15)), tr=float(rng.uniform(400, 650)))
    else:
        sequence = T.Sequence(te=float(rng.uniform(15, 30)), tr=float(rng.uniform(2000, 3000)))
    size = int(rng.choice([256, 320, 384]))
    grid = Grid(
        (size, size),
        float(rng.uniform(220, 250)) / size,
        (float(rng.normal(0, 5)), float(rng.normal(0, 5))),
    )
    canvas = Canvas(grid, rotation=float(rng.normal(0, 0.08)))
    paint_brain(canvas, Signals(sequence), kind, rng, height=float(rng.uniform(0.15, 0.85)))
    scanner = Scanner(
        grid.shape,
        rng,
        noise=float(rng.uniform(0.015, 0.05)),
        bias=float(rng.uniform(0.05, 0.25)),
        texture=float(rng.uniform(0.02, 0.06)),
        gain=0.9,
        texture_bank=bank,
    )
    return to_uint8(scanner.acquire(canvas))


def brain_slice(rng: np.random.Generator, bank: np.ndarray) -> np.ndarray:
    """One 8-bit brain slice of a random class: an image without a spine (localiser negative)."""
    return _brain_image(rng, str(rng.choice(SOURCE_CLASSES)), bank)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Window stored MR values into 8 bits by robust percentiles (0.5-99.5)."""
    lo, hi = np.percentile(pixels[::2, ::2], [0.5, 99.5])
    scaled = (pixels.astype(np.float32) - lo) / max(float(hi - lo), 1.0)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def synthesize_source_set(
    out: Path, *, images: int, seed: int = 0, force: bool = False
) -> SetSummary:
    """Write `images` brain phantoms, split evenly over the four classes, and `classes.yaml`.

    Raises:
        UserError: fewer than 4 images (one per class), or `out` not empty without `force`.
    """
    if images < len(SOURCE_CLASSES):
        raise UserError(f"--images must be at least {len(SOURCE_CLASSES)} (one per class)")
    started = time.perf_counter()
    bank = texture_bank(600, np.random.default_rng([seed, 8]))
    with staged_dir(Path(out), force=force) as staging:
        for index in range(images):
            kind = SOURCE_CLASSES[index % len(SOURCE_CLASSES)]
            folder = staging / kind
            folder.mkdir(exist_ok=True)
            pixels = _brain_image(np.random.default_rng([seed, 9, index]), kind, bank)
            name = f"{kind}_{index // len(SOURCE_CLASSES):05d}.png"
            Image.fromarray(pixels).save(folder / name)
        mapping = [f"{name}: abnormal" for name in TUMOUR_CLASSES] + [f"{NORMAL_CLASS}: normal"]
        write_text_atomic(
            staging / CLASS_MAP_FILE,
            "# folder name -> the paper's grouping (Dataset A)\n" + "\n".join(mapping) + "\n",
        )
    return SetSummary(images=images, seconds=time.perf_counter() - started)


def synthesize_unlabelled_set(
    out: Path, *, images: int, seed: int = 0, force: bool = False
) -> SetSummary:
    """Write `images` unlabelled MRI slices (about 3/4 lumbar, 1/4 brain), PNG and DICOM mixed.

    Lumbar slices come from whole phantom studies (axial T2, sagittal T2 and T1), brain slices
    from the source-set renderer with a random class; nothing records which is which.

    Raises:
        UserError: images < 1, or `out` not empty without `force`.
    """
    from lumbar.synth.cohort import make_patient
    from lumbar.synth.dicom_out import study_dataset, write_series
    from lumbar.synth.series import StudyBuilder

    if images < 1:
        raise UserError(f"--images must be at least 1, got {images}")
    started = time.perf_counter()
    rng = np.random.default_rng([seed, 10])
    bank = texture_bank(600, rng)
    written = 0
    with staged_dir(Path(out), force=force) as staging:
        patient_index = 0
        while written < images:
            batch = staging / f"batch-{written // 200:03d}"
            batch.mkdir(exist_ok=True)
            if rng.random() < 0.25:
                kind = SOURCE_CLASSES[int(rng.integers(len(SOURCE_CLASSES)))]
                pixels = _brain_image(np.random.default_rng([seed, 11, written]), kind, bank)
                Image.fromarray(pixels).save(batch / f"img_{written:06d}.png")
                written += 1
                continue
            patient = make_patient(seed + 1_000_003, patient_index)  # not the lumbar cohort's
            patient_index += 1
            study = study_dataset(patient)
            for series in StudyBuilder(patient).build():
                if written >= images:
                    break
                if series.description not in ("T2 AX", "T2 SAG", "T1 SAG"):
                    continue
                take = min(4, len(series.frames), images - written)
                keep = sorted(rng.choice(len(series.frames), size=take, replace=False))
                series.frames = [series.frames[int(k)] for k in keep]
                if rng.random() < 0.3:  # some as DICOM, in their own study folder
                    folder = batch / f"study-{patient_index:05d}"
                    written += len(write_series(folder, patient, study, series))
                else:
                    for frame in series.frames:
                        Image.fromarray(to_uint8(frame.pixels)).save(
                            batch / f"img_{written:06d}.png"
                        )
                        written += 1
    return SetSummary(images=written, seconds=time.perf_counter() - started)
