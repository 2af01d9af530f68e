"""The overlay Secondary Capture series: same study as the source, disc markers where the
discs are, lossless RGB that lumbar renders back, valid for dciodvfy."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from helpers.structured import dciodvfy_errors, predicted_study

from lumbar.data.imageio import read_uint8
from lumbar.structured.identity import Identity
from lumbar.structured.overlay import (
    _MARKER,
    MIN_HEIGHT,
    build_overlay,
    draw_discs,
    orientation_letter,
)


def test_series_belongs_to_the_source_study(predicted, tmp_path: Path) -> None:
    prediction, _, pixels = predicted_study(predicted, Identity.HOSPITAL)
    series = build_overlay(prediction, pixels)
    assert len(series) == 1 + len(prediction.discs)  # sagittal + one heat map per disc
    assert len({sc.SeriesInstanceUID for sc in series}) == 1
    assert len({sc.SOPInstanceUID for sc in series}) == len(series)
    assert [int(sc.InstanceNumber) for sc in series] == list(range(1, len(series) + 1))
    for sc in series:
        assert sc.StudyInstanceUID == prediction.identity.study_instance_uid
        assert sc.PatientID == prediction.identity.patient_id
        assert sc.PhotometricInterpretation == "RGB" and sc.BurnedInAnnotation == "YES"
        assert sc.Rows >= MIN_HEIGHT
    sources = [sc.SourceImageSequence[0].ReferencedSOPInstanceUID for sc in series]
    assert sources[0] == prediction.discs[0].image.sop_instance_uid
    assert sources[1:] == [d.axial.sop_instance_uid for d in prediction.discs]
    # lumbar renders the stored DICOM back to exactly the pixels drawn (lossless RGB)
    path = tmp_path / "sc.dcm"
    series[0].save_as(path, enforce_file_format=True)
    assert np.array_equal(read_uint8(path), series[0].pixel_array)


def test_markers_are_drawn_at_the_disc_points(predicted) -> None:
    prediction, _, pixels = predicted_study(predicted, Identity.HOSPITAL)
    sagittal = prediction.discs[0].image
    base = pixels[sagittal.sop_instance_uid]
    picture = draw_discs(base, prediction.discs)
    scale = picture.shape[0] // base.shape[0]
    marker = np.all(picture == np.array(_MARKER, dtype=np.uint8), axis=2)
    for disc in prediction.discs:
        x, y = (round((v + 0.5) * scale) for v in disc.point)
        near = marker[max(0, y - 20) : y + 20, max(0, x - 20) : x + 20]
        assert near.any(), disc.level
    assert not marker[: picture.shape[0] // 10].any()  # nothing drawn far above the discs


@pytest.mark.parametrize(
    ("vector", "letter"),
    [((0, 1, 0), "P"), ((0, -0.3, -0.95), "F"), ((-1, 0, 0), "R"), ((0.2, 0, 0.98), "H")],
)
def test_orientation_letter(vector, letter) -> None:
    assert orientation_letter(vector) == letter


def test_dciodvfy_reports_no_error(predicted, tmp_path: Path) -> None:
    for mode in Identity:
        prediction, _, pixels = predicted_study(predicted, mode)
        for k, sc in enumerate(build_overlay(prediction, pixels)):
            path = tmp_path / f"{mode}-{k}.dcm"
            sc.save_as(path, enforce_file_format=True)
            errors, output = dciodvfy_errors(path)
            assert errors == [], output
            assert pydicom.dcmread(path).Modality == "OT"


def test_caption_shows_the_main_finding_and_only_findings_present() -> None:
    """The sagittal label stays short: the main finding's value and probability, the Pfirrmann
    grade, and a further finding only when the model calls it present; its colour follows the
    main finding alone (a Pfirrmann grade of 2 is not 'abnormal')."""
    from lumbar.structured.model import FindingResult
    from lumbar.structured.overlay import _abnormal, _caption

    disc = SimpleNamespace(
        level="L4-L5",
        findings=[
            FindingResult("disc_abnormal", "normal", 0.58, 0),
            FindingResult("pfirrmann", "pfirrmann 2", 0.39, 1),
            FindingResult("bulging", "absent", 0.59, 0),
            FindingResult("narrowing", "present", 0.61, 1),
        ],
    )
    assert _caption(disc) == "L4-L5: normal 58%, pfirrmann 2 39%, narrowing present 61%"
    assert not _abnormal(disc)
