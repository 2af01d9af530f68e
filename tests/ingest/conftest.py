"""Fixtures for the DICOM tests: real files shipped by pydicom and pydicom-data, and a factory
for small MR images whose every tag the test controls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def real_file(name: str) -> Path:
    """A real DICOM file from pydicom or pydicom-data (no download: the wheels ship them)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data missing)")
    return Path(path)


def make_mr(
    path: Path,
    *,
    patient_id: str = "PID-0001",
    study_uid: str = "1.2.3.4",
    series_uid: str = "1.2.3.4.1",
    sop_uid: str | None = None,
    instance: int | None = 1,
    description: str = "T2 SAG",
    orientation: tuple[float, ...] | None = (0, 1, 0, 0, 0, -1),
    position: tuple[float, float, float] | None = (0.0, 0.0, 0.0),
    echo_time: float | None = 100.0,
    repetition_time: float | None = 3000.0,
    rows: int = 16,
    columns: int = 16,
    pixels: np.ndarray | None = None,
    window: tuple[float, float] | None = None,
    series_number: int = 1,
    **tags: Any,
) -> Path:
    """Write a small, valid MR Image Storage file with the given header."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "MR"
    ds.PatientID = patient_id
    ds.PatientName = "DOE^JANE"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "ACC999"
    ds.StudyDate = "20200101"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    if instance is not None:
        ds.InstanceNumber = instance
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    if position is not None:
        ds.ImagePositionPatient = list(position)
    if echo_time is not None:
        ds.EchoTime = echo_time
    if repetition_time is not None:
        ds.RepetitionTime = repetition_time
    if pixels is None:
        pixels = (np.arange(rows * columns, dtype=np.uint16) % 4096).reshape(rows, columns)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    for key, value in tags.items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def mr_factory() -> Callable[..., Path]:
    """`make_mr` as a fixture."""
    return make_mr


@pytest.fixture
def real_dicom() -> Callable[[str], Path]:
    """`real_file` as a fixture: name -> path of a real DICOM file shipped by pydicom(-data)."""
    return real_file
