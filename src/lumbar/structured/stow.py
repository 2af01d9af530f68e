"""STOW-RS: the SR and the overlay series sent to a DICOMweb service, into their source study.

All objects go in one multipart/related request to `URL/studies/<study UID>`; the service's
answer (PS3.18 Store Instances Response: Referenced SOP Sequence, Failed SOP Sequence) says
which were stored. A service that cannot be reached, refuses the request, or does not hold the
study (checked first by QIDO-RS, so results never open a new study) stores nothing, and the
error says so; a partial store says what was stored and what was not.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lumbar.errors import UserError
from lumbar.structured.dicomweb import study_exists

__all__ = ["StowFailed", "StowReport", "stow"]

TIMEOUT = 60.0
_REFERENCED_SOP = "00081199"
_FAILED_SOP = "00081198"
_SOP_INSTANCE = "00081155"
_FAILURE_REASON = "00081197"


@dataclass
class StowReport:
    """What a STOW-RS request stored: labels of the objects stored and of those refused."""

    url: str
    stored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    status: int | None = None

    def summary(self) -> str:
        """One line: stored N of M, naming the objects."""
        total = len(self.stored) + len(self.failed)
        stored = ", ".join(self.stored) or "nothing"
        text = f"stored {len(self.stored)} of {total} objects at {self.url} ({stored})"
        if self.failed:
            text += f"; not stored: {', '.join(self.failed)}"
        return text


class StowFailed(UserError):
    """The service stored none or only some of the objects; `report` says which."""

    def __init__(self, message: str, report: StowReport) -> None:
        super().__init__(message)
        self.report = report


def stow(url: str, study_uid: str, objects: Sequence[tuple[str, Any]]) -> StowReport:
    """Send `objects` ((label, pydicom Dataset) pairs, all of study `study_uid`) to `url`.

    Raises:
        UserError: unreachable service or a study it does not hold (nothing stored).
        StowFailed: the service refused some or all objects (the report says which).
    """
    import requests

    root = url.rstrip("/")
    if not study_exists(root, study_uid):
        raise UserError(
            f"the DICOMweb service {root} holds no study with the source's Study Instance UID; "
            "nothing was stored (results are only added to their source study)"
        )
    labels = {str(ds.SOPInstanceUID): label for label, ds in objects}
    for label, ds in objects:
        if str(ds.StudyInstanceUID) != study_uid:
            raise UserError(f"{label} is not of the source study; nothing was stored")
    boundary = "lumbar-" + secrets.token_hex(12)
    body = _multipart([ds for _, ds in objects], boundary)
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    report = StowReport(root)
    try:
        response = requests.post(
            f"{root}/studies/{study_uid}", data=body, headers=headers, timeout=TIMEOUT
        )
    except requests.RequestException as err:
        raise UserError(
            f"cannot reach DICOMweb service {root} ({type(err).__name__}); nothing was stored"
        ) from None
    report.status = response.status_code
    stored, failed = _parse(response)
    if response.status_code >= 400 and not stored:
        report.failed = list(labels.values())
        raise StowFailed(
            f"the DICOMweb service {root} refused the results (HTTP {response.status_code}); "
            "nothing was stored",
            report,
        )
    report.stored = [labels[uid] for uid in labels if uid in stored]
    report.failed = [labels[uid] for uid in labels if uid not in stored or uid in failed]
    if report.failed:
        raise StowFailed(
            f"the DICOMweb service did not store every result: {report.summary()}", report
        )
    return report


def _multipart(datasets: Sequence[Any], boundary: str) -> bytes:
    import pydicom

    out = io.BytesIO()
    for ds in datasets:
        part = io.BytesIO()
        pydicom.dcmwrite(part, ds, enforce_file_format=True)
        out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii"))
        out.write(part.getvalue())
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode("ascii"))
    return out.getvalue()


def _parse(response: Any) -> tuple[set[str], set[str]]:
    """SOP Instance UIDs the response lists as stored and as failed (empty if it is not JSON)."""
    try:
        payload = response.json()
    except ValueError:
        return set(), set()
    if isinstance(payload, list):
        payload = payload[0] if payload else {}
    if not isinstance(payload, dict):
        return set(), set()

    def uids(tag: str) -> set[str]:
        items = (payload.get(tag) or {}).get("Value") or []
        found = set()
        for item in items:
            value = (item.get(_SOP_INSTANCE) or {}).get("Value") or []
            if value:
                found.add(str(value[0]))
        return found

    return uids(_REFERENCED_SOP), uids(_FAILED_SOP)
