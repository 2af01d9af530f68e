"""`lumbar ingest` from a real Orthanc PACS over DICOMweb, compared with a folder ingest.

Orthanc runs on a free loopback port with a temporary storage folder and the DICOMweb plugin.
Where the Debian packages `orthanc` and `orthanc-dicomweb` are not installed (`make test`
installs them when run as root) these tests are skipped, with that reason shown.
"""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lumbar.errors import UserError
from lumbar.ingest import IngestOptions, ingest
from lumbar.ingest.read import iter_files
from lumbar.pseudonym import SECRET_ENV

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, phantom_cohort: Path) -> Iterator[str]:
    """URL of a fresh Orthanc's DICOMweb root, with the phantom cohort uploaded."""
    if not Path(ORTHANC).is_file():
        pytest.skip("Orthanc is not installed (Debian package orthanc; `make test` as root)")
    if not PLUGIN.is_file():
        pytest.skip(f"Orthanc DICOMweb plugin {PLUGIN} missing (Debian package orthanc-dicomweb)")
    home = tmp_path_factory.mktemp("orthanc")
    port = _free_port()
    config = {
        "Name": "lumbar-test",
        "StorageDirectory": str(home / "storage"),
        "IndexDirectory": str(home / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpDescribeErrors": True,
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{port}"},
    }
    (home / "orthanc.json").write_text(json.dumps(config))
    log = (home / "orthanc.log").open("w")
    proc = subprocess.Popen([ORTHANC, str(home / "orthanc.json")], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/system", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"Orthanc did not start: {(home / 'orthanc.log').read_text()[-800:]}"
                    )
                time.sleep(0.2)
        for path in iter_files(phantom_cohort):
            if path.suffix == ".csv":
                continue
            request = urllib.request.Request(
                f"{base}/instances", data=path.read_bytes(), method="POST"
            )
            request.add_header("Content-Type", "application/dicom")
            urllib.request.urlopen(request, timeout=30).read()
        yield f"{base}/dicom-web"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
    port = _free_port()
    with pytest.raises(UserError, match="cannot reach DICOMweb service"):
        ingest(f"http://127.0.0.1:{port}/dicom-web", tmp_path / "out")
