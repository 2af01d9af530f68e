"""The prediction drawn on the images, as a DICOM Secondary Capture series (RGB), so any PACS
viewer shows it without a plugin: instance 1 is the sagittal image with a marker, the level,
the findings and their probabilities at every disc; one further instance per graded axial
image shows the model's heat map (Grad-CAM) on it. The series belongs to the source study.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import highdicom as hd
import numpy as np

from lumbar import __version__
from lumbar.structured.model import DiscPrediction, SourceImage, StudyPrediction
from lumbar.structured.sr import MANUFACTURER, uid_from
from lumbar.visualize.overlays import overlay

__all__ = ["SC_SERIES_NUMBER", "build_overlay", "draw_discs", "orientation_letter"]

SC_SERIES_NUMBER = 9902
MIN_HEIGHT = 640  # pictures are enlarged (nearest neighbour) to at least this many rows
_MARKER = (255, 215, 0)
_ABNORMAL = (255, 80, 80)
_NORMAL = (120, 230, 120)


def orientation_letter(vector: Sequence[float]) -> str:
    """The DICOM patient orientation letter (PS3.3 C.7.6.1.1.1) of a direction's largest
    component (`(0, 0.94, -0.34)` -> "P"); highdicom takes one letter per direction."""
    names = (("L", "R"), ("P", "A"), ("H", "F"))
    k = max(range(3), key=lambda i: abs(vector[i]))
    return names[k][0 if vector[k] > 0 else 1]


def _caption(disc: DiscPrediction) -> str:
    """The level, the main finding (the first) with its probability, then only what is worth a
    reader's eye: the Pfirrmann grade and the further findings the model calls present."""
    if not disc.findings:
        return disc.level
    main, *rest = disc.findings
    parts = [f"{main.value} {main.probability:.0%}"]
    for f in rest:
        if f.name == "pfirrmann" or f.grade not in (None, 0):
            shown = f.value if f.name in f.value else f"{f.name.replace('_', ' ')} {f.value}"
            parts.append(f"{shown} {f.probability:.0%}")
    return f"{disc.level}: {', '.join(parts)}"


def _abnormal(disc: DiscPrediction) -> bool:
    """Drawn in the abnormal colour when the main finding (the first) is not its first class."""
    return bool(disc.findings) and disc.findings[0].grade not in (None, 0)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return gray if gray.ndim == 3 else np.repeat(gray[..., None], 3, axis=2)


def _enlarged(picture: np.ndarray) -> tuple[np.ndarray, int]:
    scale = max(1, math.ceil(MIN_HEIGHT / picture.shape[0]))
    return np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1), scale


def draw_discs(pixels: np.ndarray, discs: Sequence[DiscPrediction]) -> np.ndarray:
    """The image (uint8 gray or RGB) enlarged, with each disc's marker and caption: RGB uint8."""
    from PIL import Image, ImageDraw, ImageFont

    picture, scale = _enlarged(_rgb(pixels))
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    size = max(12, picture.shape[0] // 45)
    font = ImageFont.load_default(size=size)
    radius = max(4, size // 2)
    for disc in discs:
        x, y = ((v + 0.5) * scale for v in disc.point)
        colour = _ABNORMAL if _abnormal(disc) else _NORMAL
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=_MARKER, width=2)
        draw.line((x - 2 * radius, y, x - radius, y), fill=_MARKER, width=2)
        draw.text(
            (x + 2 * radius, y - size // 2), _caption(disc), fill=colour, font=font,
            stroke_width=2, stroke_fill=(0, 0, 0),
        )  # fmt: skip
    _footer(draw, picture.shape, font, size)
    return np.asarray(image)


def _heat_picture(pixels: np.ndarray, disc: DiscPrediction) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    gray = pixels if pixels.ndim == 2 else pixels.mean(axis=2).astype(np.uint8)
    blended = _rgb(gray)
    seen = None
    if disc.heatmap is not None:
        seen = np.isfinite(disc.heatmap)
        heat = overlay(gray, np.nan_to_num(disc.heatmap, nan=0.0))
        blended = np.where(seen[..., None], heat, blended)
    picture, scale = _enlarged(blended)
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    if seen is not None and seen.any():
        rows, cols = np.nonzero(seen)
        draw.rectangle(
            (cols.min() * scale, rows.min() * scale, (cols.max() + 1) * scale - 1,
             (rows.max() + 1) * scale - 1),
            outline=(255, 255, 255), width=1,
        )  # fmt: skip
    size = max(12, picture.shape[0] // 40)
    font = ImageFont.load_default(size=size)
    colour = _ABNORMAL if _abnormal(disc) else _NORMAL
    draw.text((8, 8), _caption(disc), fill=colour, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    if disc.axial_point is not None:
        x, y = ((v + 0.5) * scale for v in disc.axial_point)
        r = max(4, size // 2)
        draw.line((x - 2 * r, y, x + 2 * r, y), fill=_MARKER, width=2)
        draw.line((x, y - 2 * r, x, y + 2 * r), fill=_MARKER, width=2)
    _footer(draw, picture.shape, font, size)
    return np.asarray(image)


def _footer(draw: Any, shape: tuple[int, ...], font: Any, size: int) -> None:
    draw.text(
        (8, shape[0] - size - 8), "lumbar: model suggestion, not a diagnosis", fill=(255, 255, 255),
        font=font, stroke_width=2, stroke_fill=(0, 0, 0),
    )  # fmt: skip


def build_overlay(
    prediction: StudyPrediction,
    pixels: Mapping[str, np.ndarray],
) -> list[hd.sc.SCImage]:
    """The overlay series: the sagittal picture (when the discs lie on one) and one heat-map
    picture per axial image; `pixels` maps SOP Instance UIDs (as in the prediction) to the
    images' display pixels (uint8, gray or RGB).

    Raises:
        ValueError: the pixels of an image the prediction refers to are missing.
    """
    identity = prediction.identity
    study = identity.study_instance_uid
    series = uid_from("sc-series", study, prediction.algorithm.model_card_sha256)
    pictures: list[tuple[SourceImage, np.ndarray, str]] = []
    # discs graded on the sagittal image itself (the sagittal grader: no axial image) are
    # drawn there together, with no heat-map picture of their own
    on_sagittal = [d for d in prediction.discs if d.axial is None or d.image != d.axial]
    if on_sagittal:
        image = on_sagittal[0].image
        picture = draw_discs(_pixels(pixels, image), [d for d in on_sagittal if d.image == image])
        pictures.append((image, picture, "discs"))
    for disc in prediction.discs:
        if disc.axial is None and disc in on_sagittal:
            continue
        axial = disc.axial or disc.image
        pictures.append((axial, _heat_picture(_pixels(pixels, axial), disc), disc.level))
    out = []
    for number, (source, picture, what) in enumerate(pictures, start=1):
        orientation = None
        if source.orientation is not None:
            orientation = (
                orientation_letter(source.orientation[:3]),
                orientation_letter(source.orientation[3:]),
            )
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*intended person name", category=UserWarning
            )
            sc = hd.sc.SCImage(
                pixel_array=np.ascontiguousarray(picture, dtype=np.uint8),
                photometric_interpretation="RGB",
                bits_allocated=8,
                coordinate_system="PATIENT",
                study_instance_uid=study,
                series_instance_uid=series,
                series_number=SC_SERIES_NUMBER,
                sop_instance_uid=uid_from("sc", study, series, source.sop_instance_uid, what),
                instance_number=number,
                manufacturer=MANUFACTURER,
                patient_id=identity.patient_id,
                patient_name=identity.patient_name,
                patient_birth_date=identity.patient_birth_date or None,
                patient_sex=identity.patient_sex or None,
                accession_number=identity.accession_number,
                study_id=identity.study_id,
                study_date=identity.study_date or None,
                study_time=identity.study_time or None,
                referring_physician_name=identity.referring_physician_name,
                patient_orientation=orientation,
            )
        sc.SeriesDescription = "lumbar disc findings (overlay)"
        sc.SoftwareVersions = f"lumbar {__version__}"
        sc.DerivationDescription = f"{what}: lumbar {prediction.algorithm.name}"[:1024]
        sc.BurnedInAnnotation = "YES"
        sc.BodyPartExamined = "LSPINE"  # unpaired: General Series needs no Laterality
        _reference_source(sc, source)
        out.append(sc)
    return out


def _pixels(pixels: Mapping[str, np.ndarray], image: SourceImage) -> np.ndarray:
    try:
        return pixels[image.sop_instance_uid]
    except KeyError:
        raise ValueError("pixels of a referenced source image are missing") from None


def _reference_source(sc: Any, source: SourceImage) -> None:
    """Source Image Sequence: the picture is derived from this source instance."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    item.ReferencedSOPClassUID = source.sop_class_uid
    item.ReferencedSOPInstanceUID = source.sop_instance_uid
    sc.SourceImageSequence = DicomSequence([item])
