"""Disc centres from a CSV (the phantom's discs.csv form) and their spine order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lumbar.errors import UserError
from lumbar.ingest.discs import CsvDiscCentres, DiscCentre, SagittalSeries, spine_order


def test_csv_centres_by_study(tmp_path: Path) -> None:
    path = tmp_path / "discs.csv"
    path.write_text(
        "study_uid,level,x_mm,y_mm,z_mm,confidence\n"
        "1.2,L5-S1,0,1.5,-80,0.9\n"
        "1.2,T12-L1,0,-10,90,\n"
        "1.3,L4-L5,1,2,3,1\n"
    )
    source = CsvDiscCentres(path)
    found = source(SagittalSeries("1.2", "1.2.9"))
    assert [c.level for c in found] == ["L5-S1", "T12-L1"]
    np.testing.assert_allclose(found[0].xyz_mm, [0, 1.5, -80])
    assert [c.confidence for c in found] == [0.9, 1.0]
    assert [c.level for c in spine_order(found)] == ["T12-L1", "L5-S1"]
    assert source(SagittalSeries("9.9", "9.9.1")) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("study_uid,level,x_mm,y_mm\n", "need column\\(s\\) z_mm"),
        ("study_uid,level,x_mm,y_mm,z_mm\n1,L6-S1,0,0,0\n", "line 2: unknown disc level 'L6-S1'"),
        ("study_uid,level,x_mm,y_mm,z_mm\n1,L4-L5,a,0,0\n", "line 2: x_mm, y_mm, z_mm must be"),
        ("study_uid,level,x_mm,y_mm,z_mm\n1,L4-L5,nan,0,0\n", "line 2: coordinates must be finite"),
    ],
)
def test_bad_csv_is_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "discs.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        CsvDiscCentres(path)


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read disc centres"):
        CsvDiscCentres(tmp_path / "absent.csv")


def test_spine_order_drops_unknown_levels() -> None:
    centres = [DiscCentre("S1-S2", np.zeros(3), 1.0), DiscCentre("L1-L2", np.ones(3), 1.0)]
    assert [c.level for c in spine_order(centres)] == ["L1-L2"]


def test_localiser_source_finds_the_phantoms_discs(protocol_cohorts) -> None:  # type: ignore[no-untyped-def]
    import pydicom
    from helpers.protocol_cohorts import read_discs

    from lumbar.ingest.discs import LocaliserSource
    from lumbar.synth.protocols import Protocol

    cohort = protocol_cohorts[Protocol.REVERSED]
    files = []
    for path in sorted((cohort / "patient-0001").glob("SE*/IM*")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.SeriesDescription == "T2 SAG":
            files.append(path)
    truth = {r["level"]: float(r["z_mm"]) for r in read_discs(cohort)}
    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    found = {c.level: c for c in LocaliserSource()(SagittalSeries(study, "s", tuple(files)))}
    for level, z in truth.items():  # named right and within a slice along the spine
        assert abs(found[level].xyz_mm[2] - z) < 3.0, level
    assert LocaliserSource()(SagittalSeries(study, "s")) == []  # no files (DICOMweb): none


def test_localiser_source_that_cannot_load_fails_once_per_ingest(tmp_path: Path) -> None:
    from lumbar.ingest.discs import LocaliserSource

    source = LocaliserSource(tmp_path / "no-such-run")
    series = SagittalSeries("1.2", "1.2.3", (tmp_path / "x.dcm",))
    with pytest.raises(UserError, match="the disc localiser cannot be loaded: no localiser"):
        source(series)
    with pytest.raises(UserError, match="cannot be loaded") as again:
        source(series)
    assert again.value is source._failure  # the same failure, not a second load
