"""Discs of a DICOM study in patient coordinates: the sagittal T2 series' central slices, fused.

The series is found as `lumbar ingest` finds it (header reading and classification); its
frames are ordered by position, Eq. 1 picks the central one, and it is localised together with
its two neighbours. A level's patient position is the mean over the slices that named it, its
confidence the sum of theirs over the number of slices (a disc seen on one slice of three
counts a third), and its pixel position the projection onto the central slice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumbar.data.imageio import read_native
from lumbar.errors import UserError
from lumbar.grading import SPINE_LEVELS
from lumbar.ingest.classify import SeriesClass, classify_series, summarize_series
from lumbar.ingest.discs import DiscCentre, SagittalSeries
from lumbar.ingest.geometry import SlicePlane
from lumbar.ingest.read import HeaderProblem, InstanceRecord, iter_files, read_header
from lumbar.ingest.select import Frame, FrameOrder, SelectionProblem, eq1_frame_number, order_frames
from lumbar.localize.decode import Disc
from lumbar.localize.localizer import Localizer, default_localizer, load_localizer

#: Slices localised around the Eq. 1 central slice (the central one and one each side).
FUSED_SLICES = 3


@dataclass(frozen=True)
class PatientDisc:
    """A disc in one image's pixels and in patient coordinates (mm, DICOM LPS)."""

    level: str | None
    x: float
    y: float
    confidence: float
    x_mm: float
    y_mm: float
    z_mm: float


@dataclass(frozen=True)
class StudyDiscs:
    """What a study gave: the central sagittal T2 slice, its pixels, and the fused discs."""

    central: Path
    image: np.ndarray
    discs: list[PatientDisc]
    slices: int


def read_plane(path: Path) -> SlicePlane:
    """The geometry of one DICOM image; UserError when its tags are missing or degenerate
    (its message names no file: a DICOM file's name may be a patient's)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # pydicom raises many types for a damaged file
        raise UserError("not a readable DICOM file") from None
    try:
        return SlicePlane.from_dataset(ds)
    except UserError as err:
        raise UserError(f"no usable geometry ({err})") from None


def to_patient(discs: list[Disc], plane: SlicePlane) -> list[PatientDisc]:
    """Attach patient coordinates to discs found on one DICOM image."""
    out = []
    for d in discs:
        x_mm, y_mm, z_mm = (float(v) for v in plane.pixel_to_patient(d.x, d.y))
        out.append(PatientDisc(d.level, d.x, d.y, d.confidence, x_mm, y_mm, z_mm))
    return out


def _headers(paths: list[Path]) -> list[tuple[InstanceRecord, Path]]:
    out = []
    for path in paths:
        try:
            out.append((read_header(path), path))
        except (HeaderProblem, OSError, ValueError):
            continue
    return out


def sagittal_t2_files(study_dir: Path) -> list[Path]:
    """The files of the study's sagittal T2 series (the one with most images if several)."""
    by_series: dict[str, list[tuple[InstanceRecord, Path]]] = defaultdict(list)
    for record, path in _headers(iter_files(study_dir)):
        by_series[record.series_uid].append((record, path))
    candidates = []
    for uid, items in by_series.items():
        records = [r for r, _ in items]
        orientations = [g.orientation for r in records for g in r.frames]
        summary = summarize_series(uid, records, orientations)
        if classify_series(summary).series_class is SeriesClass.SAGITTAL_T2:
            candidates.append(items)
    if not candidates:
        raise UserError("no sagittal T2 series found")
    return [path for _, path in max(candidates, key=len)]


def central_slices(paths: list[Path], count: int = FUSED_SLICES) -> list[Path]:
    """Of one sagittal series' files: the Eq. 1 central image first, then its neighbours.

    Raises:
        UserError: no single-frame image with a position, or positions that do not order.
    """
    frames = []
    for record, path in _headers(paths):
        if record.number_of_frames != 1 or not record.frames:
            continue
        g = record.frames[0]
        frames.append(
            (Frame(record.sop_uid, 0, record.instance_number, g.position, g.orientation), path)
        )
    if not frames:
        raise UserError("the sagittal T2 series has no readable single-frame images")
    by_uid = {f.sop_uid: p for f, p in frames}
    try:
        ordered = order_frames([f for f, _ in frames], FrameOrder.POSITION)
    except SelectionProblem as err:
        raise UserError(f"sagittal T2 series: {err}") from None
    centre = eq1_frame_number(len(ordered)) - 1
    picked = [centre]
    for step in range(1, len(ordered)):
        for index in (centre - step, centre + step):
            if 0 <= index < len(ordered) and len(picked) < count:
                picked.append(index)
    return [by_uid[ordered[i].sop_uid] for i in picked]


def fuse(per_slice: list[list[PatientDisc]], central: SlicePlane) -> list[PatientDisc]:
    """Merge named discs across slices (mean position, confidence summed over all slices);
    the central slice's unnamed discs are kept as they are."""
    by_level: dict[str, list[PatientDisc]] = defaultdict(list)
    for discs in per_slice:
        for d in discs:
            if d.level is not None:
                by_level[d.level].append(d)
    fused = []
    for level in SPINE_LEVELS:
        found = by_level.get(level)
        if not found:
            continue
        point = np.mean([(d.x_mm, d.y_mm, d.z_mm) for d in found], axis=0)
        x, y = central.patient_to_pixel(point)
        confidence = sum(d.confidence for d in found) / len(per_slice)
        fused.append(PatientDisc(level, float(x), float(y), confidence, *map(float, point)))
    fused += [d for d in per_slice[0] if d.level is None]
    return sorted(fused, key=lambda d: d.y)


def localize_series(paths: list[Path], localizer: Localizer) -> StudyDiscs:
    """Discs of one sagittal T2 series (its files), fused over its central slices.

    Raises:
        UserError: no usable image, images without geometry, or unreadable pixels.
    """
    central = central_slices(paths)
    planes = [read_plane(p) for p in central]
    try:
        images = [read_native(p) for p in central]
    except (OSError, ValueError, AttributeError) as err:  # pydicom: AttributeError, no PixelData
        # an OSError's text may hold the file's path (perhaps a patient's name); strerror not
        reason = (err.strerror if isinstance(err, OSError) else None) or str(err)
        raise UserError(f"cannot read a sagittal T2 image ({reason})") from None
    spacings = [(pl.row_spacing, pl.col_spacing) for pl in planes]
    found = localizer.find(images, spacings)
    per_slice = [to_patient(d, pl) for d, pl in zip(found, planes, strict=True)]
    return StudyDiscs(central[0], images[0], fuse(per_slice, planes[0]), len(central))


def localize_study(study_dir: Path, localizer: Localizer | None = None) -> StudyDiscs:
    """Discs of a study folder from its sagittal T2 series, in patient coordinates.

    `localizer` None uses the bundled one (loaded once per process). Messages name neither
    the folder nor its files (their names may be a patient's).

    Raises:
        UserError: no sagittal T2 series, or its images lack geometry or cannot be read.
    """
    study_dir = Path(study_dir)
    localizer = localizer or default_localizer()
    return localize_series(sagittal_t2_files(study_dir), localizer)


class LocalizerDiscCentres:
    """A `lumbar.ingest.discs.DiscCentreSource`: the learnt localiser on the series' files."""

    name = "localizer"

    def __init__(self, localizer: Localizer) -> None:
        self.localizer = localizer

    def __call__(self, series: SagittalSeries) -> list[DiscCentre]:
        """Named discs of the series, patient mm (none when it has no files)."""
        if not series.paths:
            return []
        found = localize_series(list(series.paths), self.localizer)
        return [
            DiscCentre(d.level, np.array([d.x_mm, d.y_mm, d.z_mm]), d.confidence)
            for d in found.discs
            if d.level is not None
        ]


def localiser_centres(model: Path | None = None) -> LocalizerDiscCentres:
    """The learnt localiser (bundled with `model` None, else a run's) as ingest's source of
    disc centres (`lumbar.ingest.IngestOptions.disc_centres`)."""
    return LocalizerDiscCentres(default_localizer() if model is None else load_localizer(model))
