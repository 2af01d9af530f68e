"""Write a phantom study as DICOM MR Image Storage files, laid out like a PACS export.

Each patient folder holds one sub-folder per series (`SE0001/IM00001`, no file extension, as
many PACS and CD exports do). UIDs are derived from the seed, so a seed gives identical files.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from lumbar import __version__
from lumbar.synth.cohort import Patient
from lumbar.synth.series import Frame, Series

INSTITUTION = "Phantom Teaching Hospital"
STUDY_DESCRIPTION = "MRI LUMBAR SPINE"


def _uid(patient: Patient, *parts: object) -> str:
    return generate_uid(
        entropy_srcs=["lumbar-phantom", str(patient.seed), str(patient.index), *map(str, parts)]
    )


def sop_instance_uid(patient: Patient, series: Series, instance: int) -> str:
    """SOPInstanceUID of the `instance`-th (1-based) image of `series`; derived from the seed."""
    return _uid(patient, "image", series.description, instance)


def _age(birth: str, study: str) -> str:
    years = int(study[:4]) - int(birth[:4]) - (study[4:] < birth[4:])
    return f"{years:03d}Y"


def _window(pixels: np.ndarray) -> tuple[float, float]:
    """WindowCenter/Width the way consoles set them: around the body's signal range."""
    lo, hi = np.percentile(pixels[::4, ::4], [1.0, 99.5])
    return float(round((lo + hi) / 2)), float(max(round(hi - lo), 1))


def _dot(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def study_dataset(patient: Patient) -> Dataset:
    """Patient and study attributes shared by every file of the study."""
    ident = patient.identity
    ds = Dataset()
    ds.PatientName = ident.name
    ds.PatientID = ident.patient_id
    ds.PatientBirthDate = ident.birth_date
    ds.PatientSex = ident.sex
    ds.PatientAge = _age(ident.birth_date, ident.study_date)
    ds.StudyInstanceUID = _uid(patient, "study")
    ds.StudyID = str(1000 + patient.index)
    ds.StudyDate = ident.study_date
    ds.StudyTime = ident.study_time
    ds.AccessionNumber = ident.accession
    ds.ReferringPhysicianName = "REFERRER^PHANTOM"
    ds.InstitutionName = INSTITUTION
    ds.StudyDescription = STUDY_DESCRIPTION
    ds.Manufacturer = "lumbar phantom"
    ds.ManufacturerModelName = "synth"
    ds.SoftwareVersions = __version__
    ds.MagneticFieldStrength = 1.5
    ds.FrameOfReferenceUID = _uid(patient, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "LSPINE"
    return ds


def series_dataset(patient: Patient, study: Dataset, series: Series) -> Dataset:
    """Attributes shared by every image of `series` (built once, copied per frame)."""
    ds = Dataset()
    ds.update(study)
    ds.SOPClassUID = MRImageStorage
    ds.Modality = "MR"
    ds.SeriesInstanceUID = _uid(patient, "series", series.description)
    ds.SeriesNumber = series.number
    ds.SeriesDescription = series.description
    ds.ProtocolName = series.description
    ds.SeriesDate = study.StudyDate
    ds.SeriesTime = study.StudyTime
    ds.ContentDate = study.StudyDate
    ds.ContentTime = study.StudyTime
    ds.AcquisitionNumber = 1
    ds.ImageType = (
        ["ORIGINAL", "PRIMARY", "LOCALIZER"] if series.localizer else ["ORIGINAL", "PRIMARY", "M"]
    )
    ds.ScanningSequence = "GR" if series.localizer else "SE"
    ds.SequenceVariant = "SP" if series.localizer else "SK"
    ds.MRAcquisitionType = "2D"
    ds.EchoTime = round(series.sequence.te, 1)
    ds.RepetitionTime = round(series.sequence.tr, 1)
    ds.FlipAngle = series.flip_angle
    ds.EchoTrainLength = 1 if series.localizer else 16
    ds.SliceThickness = round(series.thickness, 2)
    if series.spacing_between is not None:
        ds.SpacingBetweenSlices = round(series.spacing_between, 2)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    return ds


def frame_dataset(
    patient: Patient, base: Dataset, series: Series, frame: Frame, instance: int
) -> Dataset:
    """The full dataset of one image: the series' shared attributes plus this frame's own."""
    ds = copy.copy(base)
    ds.SOPInstanceUID = sop_instance_uid(patient, series, instance)
    ds.InstanceNumber = instance
    ds.PixelSpacing = [round(frame.spacing, 6), round(frame.spacing, 6)]
    ds.ImageOrientationPatient = [round(v, 6) for v in (*frame.row_dir, *frame.col_dir)]
    ds.ImagePositionPatient = [round(v, 4) for v in frame.position]
    normal = (
        frame.row_dir[1] * frame.col_dir[2] - frame.row_dir[2] * frame.col_dir[1],
        frame.row_dir[2] * frame.col_dir[0] - frame.row_dir[0] * frame.col_dir[2],
        frame.row_dir[0] * frame.col_dir[1] - frame.row_dir[1] * frame.col_dir[0],
    )
    ds.SliceLocation = round(_dot(frame.position, normal), 4)
    ds.Rows, ds.Columns = frame.pixels.shape
    ds.WindowCenter, ds.WindowWidth = _window(frame.pixels)
    ds.PixelData = np.ascontiguousarray(frame.pixels, dtype="<u2").tobytes()
    return ds


def write_series(folder: Path, patient: Patient, study: Dataset, series: Series) -> list[Path]:
    """Write one series into `folder/SE<number>/IM<instance>`; returns the paths written."""
    target = folder / f"SE{series.number:04d}"
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    base = series_dataset(patient, study, series)
    for instance, frame in enumerate(series.frames, start=1):
        ds = frame_dataset(patient, base, series, frame, instance)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        path = target / f"IM{instance:05d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
