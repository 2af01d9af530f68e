"""`lumbar ingest` from a real Orthanc PACS over DICOMweb, compared with a folder ingest.

Orthanc runs with the DICOMweb plugin through tests/helpers/orthanc.py, which skips these tests
with the reason shown where the Debian packages `orthanc` and `orthanc-dicomweb` are absent.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.orthanc import free_port, running_orthanc, upload_files

from lumbar.errors import UserError
from lumbar.ingest import IngestOptions, ingest
from lumbar.ingest.pacs import redact_url
from lumbar.ingest.read import iter_files
from lumbar.pseudonym import SECRET_ENV


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, phantom_cohort: Path) -> Iterator[str]:
    """URL of a fresh Orthanc's DICOMweb root, with the phantom cohort uploaded."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), dicomweb=True) as base:
        upload_files(base, iter_files(phantom_cohort))
        yield f"{base}/dicom-web"


@pytest.fixture
def fixed_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "pacs-test-secret")


def _tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}


def test_dicomweb_ingest_equals_folder_ingest(orthanc, phantom_cohort, tmp_path, fixed_secret):
    from_folder = tmp_path / "folder"
    from_pacs = tmp_path / "pacs"
    ingest(phantom_cohort, from_folder, IngestOptions(workers=1))
    summary = ingest(orthanc, from_pacs, IngestOptions(workers=1))
    assert summary.complete_patients == 3
    assert (from_pacs / "images.csv").read_bytes() == (from_folder / "images.csv").read_bytes()
    assert _tree(from_pacs) == _tree(from_folder)
    assert len(_tree(from_pacs)) == 24
    # Resumed: a second run fetches no metadata and writes nothing.
    again = ingest(orthanc, from_pacs, IngestOptions(workers=1))
    assert again.index.read == 0 and again.exported == 0


def test_dicomweb_filters(orthanc, phantom_cohort, tmp_path, fixed_secret) -> None:
    reference = tmp_path / "ref"
    ingest(phantom_cohort, reference, IngestOptions(workers=1))
    with (reference / "images.csv").open() as handle:
        patients = sorted({row["patient_id"] for row in csv.DictReader(handle)})
    one = tmp_path / "one"
    summary = ingest(
        orthanc, one, IngestOptions(workers=1, patients=frozenset(patients[:1]), modality="MR")
    )
    assert summary.patients == 1 and summary.images == 8
    with pytest.raises(UserError, match="no usable images"):
        ingest(orthanc, tmp_path / "none", IngestOptions(workers=1, study_date="19000101-19001231"))


def test_unreachable_pacs_is_one_clear_error(tmp_path) -> None:
    port = free_port()
    with pytest.raises(UserError, match="cannot reach DICOMweb service"):
        ingest(f"http://127.0.0.1:{port}/dicom-web", tmp_path / "out")


def test_unreachable_pacs_error_leaves_the_study_uid_out(tmp_path) -> None:
    port = free_port()
    uid = "1.2.826.0.1.3680043.8.498.98765"
    with pytest.raises(UserError) as caught:
        ingest(f"http://127.0.0.1:{port}/dicom-web/studies/{uid}", tmp_path / "out")
    assert "98765" not in str(caught.value)
    assert f"http://127.0.0.1:{port}/dicom-web/studies/-" in str(caught.value)


def test_redact_url() -> None:
    assert redact_url("http://pacs:8042/dicom-web/studies/1.2.3") == (
        "http://pacs:8042/dicom-web/studies/-"
    )
    assert redact_url("https://pacs/dicom-web/studies/1.2.3/series/4.5") == (
        "https://pacs/dicom-web/studies/-"
    )
    assert redact_url("http://pacs:8042/dicom-web") == "http://pacs:8042/dicom-web"
    assert redact_url("scans/104_t2.png") == "scans/104_t2.png"
