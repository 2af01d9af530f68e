"""Training samples for the disc localiser: SPIDER slices, phantom sagittal slices, negatives.

Every sample is a windowed [0, 1] gray image, its disc centres (pixel centres, top to bottom)
with their level names, and its pixel spacing. Negatives (phantom brain and axial lumbar
slices, blank and noise images) have no discs: the network learns empty heat maps on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lumbar.data.imageio import read_uint8
from lumbar.data.spider import SpiderSlice
from lumbar.grading import SPINE_LEVELS
from lumbar.localize.preprocess import window
from lumbar.synth.cohort import make_patient
from lumbar.synth.imaging import texture_bank
from lumbar.synth.series import StudyBuilder
from lumbar.synth.sets import brain_slice


@dataclass(frozen=True)
class Sample:
    """One training or evaluation image with its true discs (empty for a negative)."""

    name: str
    image: np.ndarray  # float32 [0, 1], rows x cols
    points: np.ndarray  # (N, 2) x, y pixel centres, top to bottom
    levels: tuple[str, ...]
    spacing_mm: tuple[float, float] | None  # (row, column)
    kind: str  # "spider", "phantom" or "negative"
    sequence: str = ""
    patient: str = ""


def spider_sample(s: SpiderSlice) -> Sample:
    """A SPIDER slice as a sample: box centres, levels as the set names them."""
    return Sample(
        name=s.image.parent.name + "/" + s.image.name,
        image=window(read_uint8(s.image)),
        points=np.array([d.centre for d in s.discs], dtype=np.float64),
        levels=tuple(d.level for d in s.discs),
        spacing_mm=s.spacing_mm,
        kind="spider",
        sequence=s.sequence,
        patient=s.patient,
    )


def phantom_disc_pixels(
    builder: StudyBuilder, *, t1: bool = False
) -> tuple[np.ndarray, dict[str, tuple[float, float]], float]:
    """Render the phantom's mid-sagittal slice: (uint16 pixels, {level: (x, y)}, spacing mm).

    The true centres are the phantom's disc poses (patient mm) projected with the frame's own
    geometry, so they hold whatever field of view the protocol gives the series.
    """
    series = builder.sagittal(
        "T1 SAG" if t1 else "T2 SAG", builder.t1 if t1 else builder.t2, 1, stream=3 if t1 else 2
    )
    frame = series.frames[0]
    origin = np.asarray(frame.position, dtype=np.float64)
    row = np.asarray(frame.row_dir, dtype=np.float64)
    col = np.asarray(frame.col_dir, dtype=np.float64)
    centres = {}
    for level, pose in builder.disc_poses().items():
        p = np.asarray(pose.centre, dtype=np.float64) - origin
        centres[level.value] = (float(p @ row / frame.spacing), float(p @ col / frame.spacing))
    return frame.pixels, centres, frame.spacing


def phantom_samples(count: int, seed: int = 7) -> list[Sample]:
    """`count` phantom mid-sagittal slices (T2 and T1 alternating) with their true centres."""
    samples = []
    for index in range(count):
        builder = StudyBuilder(make_patient(seed, index))
        pixels, centres, spacing = phantom_disc_pixels(builder, t1=index % 2 == 1)
        levels = sorted(centres, key=SPINE_LEVELS.index)
        samples.append(
            Sample(
                name=f"phantom-{seed}-{index}",
                image=window(pixels),
                points=np.array([centres[lv] for lv in levels]),
                levels=tuple(levels),
                spacing_mm=(spacing, spacing),
                kind="phantom",
                sequence="t1" if index % 2 else "t2",
            )
        )
    return samples


def negative_samples(count: int, seed: int = 11) -> list[Sample]:
    """Images without a spine: phantom brain and axial lumbar slices, blank and noise images."""
    rng = np.random.default_rng(seed)
    bank = texture_bank(600, rng)
    samples = []
    for index in range(count):
        kind = index % 4
        if kind == 0:
            image = brain_slice(rng, bank)
        elif kind == 1:
            builder = StudyBuilder(make_patient(seed + 1, index))
            frames = builder.axial_t2().frames
            image = frames[int(rng.integers(len(frames)))].pixels
        elif kind == 2:
            image = np.full((256, 256), float(rng.uniform(0, 255)), dtype=np.float32)
        else:
            image = rng.normal(0.5, 0.2, (256, 256)).astype(np.float32)
        samples.append(
            Sample(
                name=f"negative-{seed}-{index}",
                image=window(image),
                points=np.zeros((0, 2)),
                levels=(),
                spacing_mm=None,
                kind="negative",
            )
        )
    return samples
