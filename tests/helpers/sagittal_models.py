"""Stand-ins for the disc localiser and the sagittal grader in `lumbar predict`'s plumbing tests
(the bundled models are tested end to end in tests/inference/test_batch.py; with stand-ins the
batch, naming, output and failure paths are checked exactly and fast).

`TruthFinder` answers with the true disc centres of the slices it was told about (SPIDER's boxed
centres, a phantom's true disc positions projected onto its slices) and finds nothing on any
other image, so the batch, naming, output and failure paths are tested against known discs.
`ToyGrader` grades from the crop's pixels (brighter disc centre -> lower P(abnormal)), with a
crop and a heat map per disc, in the grader's output form.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lumbar.data.spider import read_spider
from lumbar.inference.batch import PredictModels
from lumbar.inference.inputs import SagittalImage, read_sagittal_image


@dataclass(frozen=True)
class TrueDisc:
    level: str | None
    x: float
    y: float
    confidence: float


def _key(pixels: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()


@dataclass
class TruthFinder:
    """Finds the discs it was told about on exactly those pixels; nothing elsewhere."""

    known: dict[str, list[TrueDisc]] = field(default_factory=dict)
    calls: list[int] = field(default_factory=list)

    def add(self, pixels: np.ndarray, discs: list[TrueDisc]) -> None:
        self.known[_key(pixels)] = discs

    def add_spider(self, root: Path, names: list[str]) -> list[Path]:
        """Register SPIDER slices (file names) with their boxed centres; their paths."""
        paths = []
        for s in read_spider(root):
            if s.image.name in names:
                pixels = read_sagittal_image(s.image).pixels
                self.add(pixels, [TrueDisc(d.level, *d.centre, 0.95) for d in s.discs])
                paths.append(s.image)
        return paths

    def add_phantom(self, slices: list[SagittalImage], discs_csv: Path, patient: str) -> None:
        """Register a phantom study's sagittal slices with its true disc centres (patient mm
        from `lumbar synth`'s discs.csv, projected onto each slice)."""
        with open(discs_csv, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["patient_id"] == patient]
        for image in slices:
            assert image.plane is not None
            discs = []
            for r in rows:
                x, y = image.plane.patient_to_pixel(
                    np.array([float(r["x_mm"]), float(r["y_mm"]), float(r["z_mm"])])
                )
                discs.append(TrueDisc(r["level"], float(x), float(y), 0.9))
            self.add(image.pixels, discs)

    def find(self, images, spacing_mm):
        self.calls.append(len(images))
        return [list(self.known.get(_key(np.asarray(i)), [])) for i in images]


@dataclass
class ToyGrade:
    """One disc's grades in the form of `lumbar.grader.DiscResult`."""

    p_abnormal: float
    findings: dict[str, float]
    pfirrmann_probabilities: tuple[float, ...]
    heatmap: np.ndarray | None
    crop_corners: tuple[tuple[float, float], ...]


class ToyGrader:
    """P(abnormal) from how dark the disc centre is relative to the slice (a toy rule)."""

    def grade_batch(self, slices, *, gradcam=False):
        return [self._grade(image, discs, gradcam) for image, discs, _ in slices]

    def _grade(self, image, discs, gradcam):
        image = np.asarray(image, dtype=np.float32)
        top = float(np.percentile(image, 99)) or 1.0
        out = []
        for _, x, y in discs:
            r, c = round(y), round(x)
            patch = image[max(0, r - 8) : r + 9, max(0, c - 16) : c + 17]
            p = float(np.clip(1.0 - patch.mean() / top, 0.0, 1.0))
            grades = np.array([1 - p, 1 - p, 0.5, p, p]) + 1e-3
            grades /= grades.sum()
            heat = None
            if gradcam:
                yy, xx = np.mgrid[0:16, 0:16]
                heat = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 20.0)
            corners = ((x - 30, y - 30), (x + 30, y - 30), (x + 30, y + 30), (x - 30, y + 30))
            out.append(
                ToyGrade(
                    p,
                    {"bulging": p / 2, "herniation": p / 4, "narrowing": p / 3},
                    tuple(float(v) for v in grades),
                    heat,
                    corners,
                )
            )
        return out


def toy_models(finder: TruthFinder) -> PredictModels:
    """`lumbar predict`'s models with the stand-ins (the axial run left out)."""
    return PredictModels(
        finder,
        ToyGrader(),
        None,
        {"localizer": "truth (test)", "grader": "toy (test)"},
        [{"name": "test models", "summary": "stand-ins"}],
    )
