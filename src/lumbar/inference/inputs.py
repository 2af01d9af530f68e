"""What `lumbar predict` is given: a sagittal image file, a DICOM study folder, or a DICOMweb
study URL, and the safe folder name each one's outputs get.

Names never carry what a file or folder is called when that may name a person: an image keeps
its file stem (PNG/JPEG/DICOM slices are named by whoever exported them, as in SPIDER's
`104_t2.png`), reduced to letters, digits, `.`, `_` and `-`; a study is named by the keyed
pseudonym of its patient (`lumbar.pseudonym`, the same function and secret as `lumbar ingest`),
never by its folder or URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from lumbar.data.imageio import DICOM_SUFFIXES, RASTER_SUFFIXES, is_dicom, read_native
from lumbar.errors import UserError
from lumbar.ingest.geometry import SlicePlane

__all__ = [
    "InputKind",
    "PredictInput",
    "SagittalImage",
    "UniqueNames",
    "classify_input",
    "read_sagittal_image",
    "safe_stem",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class InputKind(StrEnum):
    """The three kinds of `lumbar predict` input."""

    IMAGE = "image"
    STUDY = "study"
    URL = "url"


@dataclass(frozen=True)
class PredictInput:
    """One input: `given` exactly as on the command line, its kind, and its local path."""

    given: str
    kind: InputKind
    path: Path | None


@dataclass
class SagittalImage:
    """One sagittal slice ready for the localiser: pixels as stored, (row, column) spacing in
    mm when known (DICOM), and its plane (DICOM geometry) when it has one."""

    pixels: np.ndarray
    spacing: tuple[float, float] | None
    plane: SlicePlane | None = None


def classify_input(given: str) -> PredictInput:
    """Which kind of input `given` is.

    Raises:
        UserError: nothing at that path, or a file that is neither an image nor DICOM.
    """
    if given.startswith(("http://", "https://")):
        return PredictInput(given, InputKind.URL, None)
    path = Path(given)
    if path.is_dir():
        return PredictInput(given, InputKind.STUDY, path)
    if not path.is_file():
        raise UserError("no such file or folder")
    suffix = path.suffix.lower()
    try:
        image = suffix in RASTER_SUFFIXES or suffix in DICOM_SUFFIXES or is_dicom(path)
    except OSError:
        raise UserError("cannot read the file") from None
    if not image:
        raise UserError(
            "not an image (PNG, JPEG, DICOM slice), a DICOM study folder or a DICOMweb URL"
        )
    return PredictInput(given, InputKind.IMAGE, path)


def read_sagittal_image(path: Path) -> SagittalImage:
    """Pixels, spacing and plane of one image file (PNG/JPEG: no spacing, no plane).

    Raises:
        UserError: unreadable or not an image; a multi-frame DICOM.
    """
    plane = None
    dicom = False
    try:
        dicom = is_dicom(path)
        if dicom:
            import pydicom

            header = pydicom.dcmread(path, stop_before_pixels=True)
            if "PixelSpacing" in header and "ImagePositionPatient" in header:
                plane = SlicePlane.from_dataset(header)
        pixels = read_native(path)
    except UserError as err:
        raise UserError(f"unusable DICOM geometry ({err})") from None
    except Exception as err:  # PIL and pydicom raise many types for a damaged or odd file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        what = "DICOM image" if dicom else "image"
        raise UserError(f"cannot read the {what} ({first})") from None
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=2).astype(np.float32)
    if pixels.ndim != 2 or min(pixels.shape) < 16:
        raise UserError(f"not a usable 2-D image (shape {pixels.shape})")
    spacing = None
    if plane is not None:
        spacing = (float(plane.row_spacing), float(plane.col_spacing))
    elif dicom:
        spacing = _dicom_spacing(path)
    return SagittalImage(pixels, spacing, plane)


def _dicom_spacing(path: Path) -> tuple[float, float] | None:
    """PixelSpacing of a DICOM file without full geometry, when it has one."""
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        row, col = (float(v) for v in header.PixelSpacing)
    except Exception:  # absent or malformed: the image is still usable without it
        return None
    return (row, col) if row > 0 and col > 0 else None


def safe_stem(text: str, fallback: str = "input") -> str:
    """`text` reduced to letters, digits, `.`, `_`, `-` (at most 64), never empty or hidden."""
    stem = _UNSAFE.sub("_", text).strip("._-")[:64]
    return stem or fallback


class UniqueNames:
    """Names handed out in order, each once: a name already given is suffixed -2, -3, ...
    (the lowest free number), so inputs processed in chunks still get distinct folders."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __call__(self, name: str) -> str:
        candidate, count = name, 1
        while candidate in self.taken:
            count += 1
            candidate = f"{name}-{count}"
        self.taken.add(candidate)
        return candidate
