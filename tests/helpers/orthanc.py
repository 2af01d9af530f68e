"""A real Orthanc PACS for tests: started on a free loopback port with a temporary storage
folder and the DICOMweb plugin, stopped afterwards. Where the Debian packages `orthanc` and
`orthanc-dicomweb` are missing (`make test` installs them when run as root) the test using it
is skipped, with that reason shown."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    """A TCP port nobody listens on right now (for servers and for unreachable URLs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def skip_without_orthanc() -> None:
    """Skip the calling test (visibly) where Orthanc or its DICOMweb plugin is missing."""
    if not Path(ORTHANC).is_file():
        pytest.skip("Orthanc is not installed (Debian package orthanc; `make test` as root)")
    if not PLUGIN.is_file():
        pytest.skip(f"Orthanc DICOMweb plugin {PLUGIN} missing (Debian package orthanc-dicomweb)")


@contextlib.contextmanager
def running_orthanc(home: Path) -> Iterator[str]:
    """Start Orthanc with its storage under `home`; yield its REST root (`http://127.0.0.1:P`).

    The DICOMweb root is that + "/dicom-web". Skips the test where Orthanc is missing.
    """
    skip_without_orthanc()
    port = free_port()
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
    home.mkdir(parents=True, exist_ok=True)
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
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def upload(base: str, files: Iterable[Path]) -> int:
    """POST DICOM files to Orthanc's REST API (non-DICOM files skipped); return the count."""
    count = 0
    for path in files:
        if path.suffix in (".csv", ".json", ".txt"):
            continue
        request = urllib.request.Request(f"{base}/instances", data=path.read_bytes(), method="POST")
        request.add_header("Content-Type", "application/dicom")
        urllib.request.urlopen(request, timeout=30).read()
        count += 1
    return count


def get_json(url: str) -> object:
    """GET a JSON document (Orthanc REST or DICOMweb QIDO)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read() or b"null")
