"""The tool-independent result: validation, and the geometry that places a disc on the sagittal
image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers.structured import predicted_study

from lumbar.errors import UserError
from lumbar.structured.identity import Identity
from lumbar.structured.model import DiscPrediction, FindingResult, NoDiscFound, StudyPrediction


def test_validation(predicted) -> None:
    prediction, _, _ = predicted_study(predicted, Identity.HOSPITAL)
    disc = prediction.discs[0]
    with pytest.raises(ValueError, match="unknown disc level"):
        dataclasses.replace(disc, level="L6-L7")
    with pytest.raises(ValueError, match="outside 0-1"):
        FindingResult("disc_state", "bulge", 1.2)
    with pytest.raises(ValueError, match="given twice"):
        dataclasses.replace(disc, findings=(disc.findings[0], disc.findings[0]))
    with pytest.raises(NoDiscFound) as err:
        dataclasses.replace(prediction, discs=())
    assert isinstance(err.value, UserError)
    assert FindingResult("scs", "mild", 0.1234567).probability == 0.12346


def test_discs_lie_on_the_sagittal_image_at_their_axial_slice(predicted) -> None:
    prediction, _, _ = predicted_study(predicted, Identity.HOSPITAL)
    assert [d.level for d in prediction.discs] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    rows = []
    for disc in prediction.discs:
        assert isinstance(disc, DiscPrediction) and disc.axial is not None
        assert disc.image.series_instance_uid != disc.axial.series_instance_uid  # sagittal
        x, y = disc.point
        assert 0 <= x < disc.image.columns and 0 <= y < disc.image.rows
        # the point is in the axial slice's plane (within the slice's thickness)
        patient = disc.image.to_patient(x, y)
        normal = np.cross(disc.axial.orientation[:3], disc.axial.orientation[3:])
        assert abs(float((patient - np.asarray(disc.axial.position)) @ normal)) < 3.0
        back = disc.axial.from_patient(disc.axial.to_patient(*disc.axial_point))
        assert back == pytest.approx(disc.axial_point, abs=1e-3)  # 6-decimal orientation
        assert disc.heatmap is not None and disc.heatmap.shape == (
            disc.axial.rows,
            disc.axial.columns,
        )
        rows.append(y)
    assert rows == sorted(rows)  # L1-L2 highest on the image, L5-S1 lowest
    assert len(prediction.images()) == 6


def test_study_prediction_refuses_a_level_twice(predicted) -> None:
    prediction, _, _ = predicted_study(predicted, Identity.HOSPITAL)
    with pytest.raises(ValueError, match="given twice"):
        StudyPrediction(
            prediction.identity, prediction.algorithm, (prediction.discs[0], prediction.discs[0])
        )
