"""STOW-RS against a scripted DICOMweb service: refusals, partial stores, unknown studies and
unreachable services each give one line that says what was stored."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pydicom
import pytest
from helpers.orthanc import free_port

from lumbar.errors import UserError
from lumbar.structured.stow import StowFailed, stow

STUDY = "1.2.826.0.1.3680043.8.498.1"


class _Service(BaseHTTPRequestHandler):
    """QIDO answers from `studies`; STOW answers `status` and stores all but `refuse`."""

    studies: ClassVar[list[str]] = []
    status = 200
    refuse: ClassVar[set[str]] = set()
    posts: ClassVar[list[bytes]] = []
    sent: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        found = [{"0020000D": {"vr": "UI", "Value": [uid]}} for uid in self.studies]
        self._send(200, found)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append(body)
        if self.status >= 500:
            self._send(self.status, None)
            return
        uids = [u for u in self.sent if u.encode() in body]

        def items(chosen: list[str]) -> dict:
            values = [{"00081155": {"vr": "UI", "Value": [u]}} for u in chosen]
            return {"vr": "SQ", "Value": values}

        stored = [u for u in uids if u not in self.refuse]
        failed = [u for u in uids if u in self.refuse]
        self._send(self.status, {"00081199": items(stored), "00081198": items(failed)})

    def _send(self, status: int, payload: object) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def service() -> Iterator[tuple[str, type[_Service]]]:
    handler = type(
        "Handler", (_Service,), {"studies": [STUDY], "posts": [], "refuse": set(), "sent": []}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web", handler
    finally:
        server.shutdown()
        server.server_close()


def _objects(study: str = STUDY) -> list[tuple[str, pydicom.Dataset]]:
    out = []
    for k, label in enumerate(["SR", "overlay 1"]):
        ds = pydicom.Dataset()
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{100 + k}"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.99"
        out.append((label, ds))
    return out


def test_all_stored(service) -> None:
    url, handler = service
    handler.sent = [ds.SOPInstanceUID for _, ds in _objects()]
    report = stow(url, STUDY, _objects())
    assert report.stored == ["SR", "overlay 1"] and report.failed == []
    assert "stored 2 of 2" in report.summary()
    assert b"application/dicom" in handler.posts[0]


def test_refused_request_stores_nothing(service) -> None:
    url, handler = service
    handler.status = 503
    with pytest.raises(StowFailed, match=r"refused the results \(HTTP 503\); nothing was stored"):
        stow(url, STUDY, _objects())


def test_partial_store_says_what_was_stored(service) -> None:
    url, handler = service
    objects = _objects()
    handler.sent = [ds.SOPInstanceUID for _, ds in objects]
    handler.status = 202
    handler.refuse = {objects[1][1].SOPInstanceUID}
    with pytest.raises(StowFailed) as err:
        stow(url, STUDY, objects)
    assert err.value.report.stored == ["SR"] and err.value.report.failed == ["overlay 1"]
    assert "stored 1 of 2" in str(err.value) and "not stored: overlay 1" in str(err.value)


def test_unknown_study_or_foreign_object_sends_nothing(service) -> None:
    url, handler = service
    handler.studies = []
    with pytest.raises(UserError, match=r"holds no study .* nothing was stored"):
        stow(url, STUDY, _objects())
    handler.studies = [STUDY]
    with pytest.raises(UserError, match="SR is not of the source study"):
        stow(url, STUDY, _objects("1.2.3"))
    assert handler.posts == []


def test_unreachable_service() -> None:
    with pytest.raises(UserError, match="cannot reach DICOMweb service"):
        stow(f"http://127.0.0.1:{free_port()}/dicom-web", STUDY, _objects())
