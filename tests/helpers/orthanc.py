"""One way for tests to run Orthanc (the PACS of tests/ingest/test_pacs.py and the de-
identification cross-check): a fresh server on a free loopback port with a temporary storage
folder, optionally with the DICOMweb plugin. Where the Debian packages `orthanc` (and
`orthanc-dicomweb`) are not installed (`make test` installs them when run as root), the tests
that need it are skipped with that reason shown.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    """A TCP port nobody listens on now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def skip_without_orthanc(*, dicomweb: bool = False) -> None:
    """Skip the calling test (visibly) where Orthanc, or with `dicomweb` its plugin, is missing."""
    if not Path(ORTHANC).is_file():
        pytest.skip("Orthanc is not installed (Debian package orthanc; `make test` as root)")
    if dicomweb and not DICOMWEB_PLUGIN.is_file():
        pytest.skip(
            f"Orthanc DICOMweb plugin {DICOMWEB_PLUGIN} missing (Debian package orthanc-dicomweb)"
        )


@contextmanager
def running_orthanc(home: Path, *, dicomweb: bool = False) -> Iterator[str]:
    """Start Orthanc with its files under `home`; yields its REST base URL, stops it after.
    With `dicomweb` its DICOMweb root is that URL + "/dicom-web".

    Skips the calling test when Orthanc (or, with `dicomweb`, its plugin) is not installed.
    """
    skip_without_orthanc(dicomweb=dicomweb)
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "Name": "lumbar-test",
        "StorageDirectory": str(home / "storage"),
        "IndexDirectory": str(home / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpDescribeErrors": True,
        "Plugins": [],
    }
    if dicomweb:
        config["Plugins"] = [str(DICOMWEB_PLUGIN)]
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{port}"}
    (home / "orthanc.json").write_text(json.dumps(config))
    log_path = home / "orthanc.log"
    log = log_path.open("w")
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
                    pytest.fail(f"Orthanc did not start: {log_path.read_text()[-800:]}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def upload(base: str, data: bytes) -> str:
    """POST one DICOM file; returns Orthanc's instance ID."""
    request = urllib.request.Request(f"{base}/instances", data=data, method="POST")
    request.add_header("Content-Type", "application/dicom")
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.loads(response.read())["ID"])


def post_json(base: str, path: str, body: Any) -> bytes:
    """POST a JSON body to a REST path; returns the raw response."""
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def get(base: str, path: str) -> bytes:
    """GET a REST path; returns the raw response."""
    with urllib.request.urlopen(f"{base}{path}", timeout=60) as response:
        return response.read()


def upload_files(base: str, files: Iterable[Path]) -> int:
    """POST every DICOM file of `files` (CSV, JSON and text files skipped); returns the count."""
    count = 0
    for path in files:
        if path.suffix not in (".csv", ".json", ".txt"):
            upload(base, path.read_bytes())
            count += 1
    return count


def get_json(url: str) -> object:
    """GET a JSON document (Orthanc REST or DICOMweb QIDO) from a full URL."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read() or b"null")
