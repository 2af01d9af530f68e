"""Phantom scanner protocols: each writes the series it promises and the true disc positions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers.protocol_cohorts import read_discs

from lumbar.errors import UserError
from lumbar.grading import LEVELS
from lumbar.ingest.geometry import SlicePlane
from lumbar.synth.protocols import CONCRETE_PROTOCOLS, Protocol, patient_protocol


def _axial_images(cohort: Path) -> dict[str, list[pydicom.Dataset]]:
    """Axial T2 images of the single patient, by series description, in instance order."""
    series: dict[str, list[pydicom.Dataset]] = {}
    for path in sorted((cohort / "patient-0001").glob("SE*/IM*")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.SeriesDescription.startswith("T2 AX"):
            series.setdefault(ds.SeriesDescription, []).append(ds)
    for images in series.values():
        images.sort(key=lambda d: int(d.InstanceNumber))
    return series


def _descriptions(cohort: Path) -> set[str]:
    return {
        pydicom.dcmread(next(folder.glob("IM*")), stop_before_pixels=True).SeriesDescription
        for folder in (cohort / "patient-0001").glob("SE*")
    }


def test_truth_mid_disc_image_is_the_nearest_axial_plane_within_half_a_gap(
    protocol_cohorts: dict[Protocol, Path],
) -> None:
    for protocol, cohort in protocol_cohorts.items():
        images = {ds.SOPInstanceUID: ds for group in _axial_images(cohort).values() for ds in group}
        for row in read_discs(cohort):
            assert row["protocol"] == protocol.value
            if row["level"] not in {lv.value for lv in LEVELS}:  # thoracic: no axial slices
                assert (
                    protocol in (Protocol.THORACIC, Protocol.CUTSACRUM) and not row["axial_sop_uid"]
                )
                continue
            centre = np.array([float(row["x_mm"]), float(row["y_mm"]), float(row["z_mm"])])
            distances = {
                uid: abs(float(SlicePlane.from_dataset(ds).signed_distance(centre)))
                for uid, ds in images.items()
            }
            if not row["axial_sop_uid"]:
                assert protocol is Protocol.LOWER3 and row["level"] in ("L1-L2", "L2-L3")
                assert min(distances.values()) > 3.0
                continue
            truth = row["axial_sop_uid"]
            assert distances[truth] == min(distances.values())
            gap = float(images[truth].get("SpacingBetweenSlices", images[truth].SliceThickness))
            assert distances[truth] <= gap / 2 + 0.01, (protocol, row["level"])


def test_each_protocol_has_its_own_axial_layout(protocol_cohorts: dict[Protocol, Path]) -> None:
    sizes = {
        p: {name: len(images) for name, images in _axial_images(c).items()}
        for p, c in protocol_cohorts.items()
    }
    assert sizes[Protocol.PAPER] == {"T2 AX": 25}
    assert sizes[Protocol.REVERSED] == {"T2 AX": 25}
    assert sizes[Protocol.LOWER3] == {"T2 AX": 15}
    assert sizes[Protocol.SPLIT] == {"T2 AX L3-S1": 15, "T2 AX L1-L3": 10}
    assert 15 <= sizes[Protocol.ANGLED]["T2 AX"] <= 30
    assert sizes[Protocol.PARALLEL]["T2 AX"] > 25
    paper = [int(r["axial_instance"]) for r in read_discs(protocol_cohorts[Protocol.PAPER])]
    assert paper == [23, 18, 13, 8, 3]  # Eq. 2's frames, L1-L2 .. L5-S1
    reversed_ = [int(r["axial_instance"]) for r in read_discs(protocol_cohorts[Protocol.REVERSED])]
    assert reversed_ == [3, 8, 13, 18, 23]
    # one parallel stack: every slice shares one orientation
    parallel = _axial_images(protocol_cohorts[Protocol.PARALLEL])["T2 AX"]
    assert len({tuple(ds.ImageOrientationPatient) for ds in parallel}) == 1
    assert "T2 SAG" not in _descriptions(protocol_cohorts[Protocol.NOSAGT2])
    assert "T2 SAG" in _descriptions(protocol_cohorts[Protocol.ANGLED])
    assert [r["level"] for r in read_discs(protocol_cohorts[Protocol.PAPER])] == [
        lv.value for lv in LEVELS
    ]


def test_mixed_draws_every_protocol_and_unknown_names_are_a_user_error() -> None:
    drawn = {patient_protocol(Protocol.MIXED, 0, index) for index in range(60)}
    assert drawn == set(CONCRETE_PROTOCOLS)
    assert patient_protocol(Protocol.SPLIT, 0, 3) is Protocol.SPLIT
    with pytest.raises(UserError, match="unknown protocol 'oblique'"):
        Protocol.parse("oblique")


def test_sagittal_fields_of_view_show_thoracic_levels_or_cut_the_sacrum(
    protocol_cohorts: dict[Protocol, Path],
) -> None:
    lumbar = [lv.value for lv in LEVELS]
    for protocol in (Protocol.PAPER, Protocol.THORACIC, Protocol.CUTSACRUM):
        cohort = protocol_cohorts[protocol]
        rows = read_discs(cohort)
        sagittal = sorted(
            (cohort / "patient-0001").glob("SE*/IM*"),
        )
        images = [pydicom.dcmread(p, stop_before_pixels=True) for p in sagittal]
        t2 = sorted(
            (d for d in images if d.SeriesDescription == "T2 SAG"),
            key=lambda d: int(d.InstanceNumber),
        )
        middle = SlicePlane.from_dataset(t2[len(t2) // 2])
        bottom = middle.pixel_to_patient(0, int(t2[0].Rows) - 1)[2]  # z of the lowest row
        l5s1 = next(float(r["z_mm"]) for r in rows if r["level"] == "L5-S1")
        if protocol is Protocol.PAPER:
            assert [r["level"] for r in rows] == lumbar
            assert l5s1 - bottom > 25  # the whole sacrum below L5-S1 is in view
        else:
            assert [r["level"] for r in rows] == ["T9-T10", "T10-T11", "T11-T12", "T12-L1", *lumbar]
        if protocol is Protocol.THORACIC:
            assert all(r["sagittal_visible"] == "1" for r in rows)
        if protocol is Protocol.CUTSACRUM:
            assert 10 < l5s1 - bottom < 24  # the lower edge runs through S1
            assert all(r["sagittal_visible"] == "1" for r in rows if r["level"] in lumbar)
