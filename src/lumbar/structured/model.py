"""What a prediction on one study says, independent of the output format (SR, SC, FHIR).

A `StudyPrediction` names the study (in the identity chosen for the outputs, see
`lumbar.structured.identity`), the algorithm, and per disc: its level (a name of
`lumbar.grading.SPINE_LEVELS`), a point on the source image where it lies, the axial image the
model graded (if any), and the findings with their probabilities. Points are pixel coordinates
of the image array (x = column, y = row, the centre of pixel (0, 0) at (0.0, 0.0)); the DICOM
writers convert them to DICOM image coordinates (centre of column c at c + 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lumbar.errors import UserError
from lumbar.grading import SPINE_LEVELS

__all__ = [
    "POINT_DECIMALS",
    "PROBABILITY_DECIMALS",
    "AlgorithmInfo",
    "DiscPrediction",
    "FindingResult",
    "NoDiscFound",
    "SourceImage",
    "StudyIdentity",
    "StudyPrediction",
]

#: Probabilities and points are kept at these decimals, so every format stores them exactly
#: (an SR's decimal strings, its 32-bit float coordinates, FHIR JSON) and reads them back equal.
PROBABILITY_DECIMALS = 5
POINT_DECIMALS = 2


class NoDiscFound(UserError):
    """The study yielded no disc to report; nothing is written or sent."""


@dataclass(frozen=True)
class SourceImage:
    """One source DICOM image (instance) a result refers to, with its geometry."""

    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    rows: int
    columns: int
    frame_of_reference_uid: str = ""
    position: tuple[float, float, float] | None = None  # ImagePositionPatient
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient (6 values)
    spacing: tuple[float, float] | None = None  # PixelSpacing (row spacing, column spacing)

    def to_patient(self, x: float, y: float) -> np.ndarray:
        """Patient coordinates (mm) of pixel position (x = column, y = row).

        Raises:
            ValueError: the image carries no geometry.
        """
        if self.position is None or self.orientation is None or self.spacing is None:
            raise ValueError("image has no patient geometry")
        row_dir = np.asarray(self.orientation[:3])
        col_dir = np.asarray(self.orientation[3:])
        return (
            np.asarray(self.position)
            + row_dir * x * self.spacing[1]
            + col_dir * y * self.spacing[0]
        )

    def from_patient(self, point: Sequence[float]) -> tuple[float, float]:
        """Pixel position (x, y) of the projection of a patient point onto this image plane."""
        if self.position is None or self.orientation is None or self.spacing is None:
            raise ValueError("image has no patient geometry")
        offset = np.asarray(point, dtype=float) - np.asarray(self.position)
        x = float(offset @ np.asarray(self.orientation[:3])) / self.spacing[1]
        y = float(offset @ np.asarray(self.orientation[3:])) / self.spacing[0]
        return x, y


@dataclass(frozen=True)
class FindingResult:
    """One finding of one disc: its name (a training target such as `disc_state`), the value
    the model chose (a class name such as `bulge`) and the probability it gave that value."""

    name: str
    value: str
    probability: float
    grade: int | None = None  # the value's index in the model's classes, when known

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability {self.probability} of {self.name} is outside 0-1")
        object.__setattr__(
            self, "probability", round(float(self.probability), PROBABILITY_DECIMALS)
        )


@dataclass(frozen=True)
class DiscPrediction:
    """One disc: level, where it is on `image` (sagittal where the study has one), the axial
    image graded and the point the model attended to there, the findings, and a heat map of
    the axial image (same size as that image's pixels, values 0-1, NaN where the model did not
    look) when one was made."""

    level: str
    image: SourceImage
    point: tuple[float, float]
    findings: tuple[FindingResult, ...]
    axial: SourceImage | None = None
    axial_point: tuple[float, float] | None = None
    heatmap: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.level not in SPINE_LEVELS:
            raise ValueError(f"unknown disc level {self.level!r}")
        object.__setattr__(self, "point", _rounded(self.point))
        if self.axial_point is not None:
            object.__setattr__(self, "axial_point", _rounded(self.axial_point))
        names = [f.name for f in self.findings]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.level}: a finding is given twice ({', '.join(names)})")


@dataclass(frozen=True)
class AlgorithmInfo:
    """The algorithm's identification: name, version, SHA-256 of its model card (or, for a
    run without a card, of its config and checkpoint)."""

    name: str
    version: str
    model_card_sha256: str


@dataclass(frozen=True)
class StudyIdentity:
    """The patient and study attributes the outputs carry (original or pseudonymised)."""

    patient_id: str
    patient_name: str
    study_instance_uid: str
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""


@dataclass(frozen=True)
class StudyPrediction:
    """All that the structured outputs of one study say."""

    identity: StudyIdentity
    algorithm: AlgorithmInfo
    discs: tuple[DiscPrediction, ...]
    mode: str = "research"  # the identity mode: "hospital" or "research"

    def __post_init__(self) -> None:
        if not self.discs:
            raise NoDiscFound("the study yielded no disc; no structured report was made")
        levels = [d.level for d in self.discs]
        if len(set(levels)) != len(levels):
            raise ValueError(f"a disc level is given twice: {', '.join(levels)}")

    def images(self) -> list[SourceImage]:
        """Every source image referred to, each once, in first-use order."""
        seen: dict[str, SourceImage] = {}
        for disc in self.discs:
            for image in (disc.image, disc.axial):
                if image is not None:
                    seen.setdefault(image.sop_instance_uid, image)
        return list(seen.values())


def _rounded(point: Sequence[float]) -> tuple[float, float]:
    x, y = point
    return (round(float(x), POINT_DECIMALS), round(float(y), POINT_DECIMALS))
