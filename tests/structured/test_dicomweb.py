"""A DICOMweb study URL as `lumbar predict`'s input."""

from __future__ import annotations

import pytest
from helpers.orthanc import free_port

from lumbar.errors import UserError
from lumbar.structured.dicomweb import fetch_study, parse_study_url


def test_parse_study_url() -> None:
    assert parse_study_url("studies/patient-1") is None
    assert parse_study_url("http://pacs:8042/dicom-web/studies/1.2.840.5/") == (
        "http://pacs:8042/dicom-web",
        "1.2.840.5",
    )
    with pytest.raises(UserError, match="given as http"):
        parse_study_url("http://pacs:8042/dicom-web")
    with pytest.raises(UserError, match="given as http"):
        parse_study_url("https://pacs/dicom-web/studies/1.2.x")


def test_unreachable_service_is_one_line(tmp_path) -> None:
    with pytest.raises(UserError, match="cannot reach DICOMweb service"):
        fetch_study(f"http://127.0.0.1:{free_port()}/dicom-web", "1.2.3", tmp_path / "s")
    assert not (tmp_path / "s").exists()
