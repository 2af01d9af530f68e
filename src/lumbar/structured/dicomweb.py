"""A study on a DICOMweb service as `lumbar predict`'s input: `http://host/dicom-web/studies/UID`.

The study's instances are found by QIDO-RS and fetched by WADO-RS into a local folder, which
`lumbar predict` then reads like any study folder. Messages name the service root, never the
study UID (a hospital identifier).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lumbar.errors import UserError

__all__ = ["fetch_study", "parse_study_url", "service_call", "study_exists"]

_STUDY_URL = re.compile(r"^(?P<root>https?://.+?)/studies/(?P<uid>[0-9]+(?:\.[0-9]+)*)/?$")
TIMEOUT = 60.0


def parse_study_url(text: str) -> tuple[str, str] | None:
    """(service root, Study Instance UID) of a `.../studies/UID` URL; None for anything else.

    Raises:
        UserError: an http(s) URL that does not name one study.
    """
    if not text.startswith(("http://", "https://")):
        return None
    match = _STUDY_URL.match(text)
    if match is None:
        raise UserError("a DICOMweb study is given as http(s)://HOST/ROOT/studies/STUDY_UID")
    return match["root"], match["uid"]


def _client(root: str) -> Any:
    from dicomweb_client import DICOMwebClient

    client = DICOMwebClient(root, timeout=TIMEOUT)
    client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=250)
    return client


def service_call(root: str, what: str, func: Callable[[], Any]) -> Any:
    """Run one DICOMweb request; HTTP errors and unreachable services become one-line errors."""
    import requests

    try:
        return func()
    except requests.HTTPError as err:
        code = err.response.status_code if err.response is not None else "?"
        raise UserError(f"DICOMweb {what} failed at {root}: HTTP {code}") from None
    except requests.RequestException as err:
        raise UserError(f"cannot reach DICOMweb service {root} ({type(err).__name__})") from None


def study_exists(root: str, study_uid: str) -> bool:
    """Whether the service holds the study (QIDO-RS)."""
    client = _client(root)
    found = service_call(
        root,
        "study search",
        lambda: client.search_for_studies(search_filters={"StudyInstanceUID": study_uid}),
    )
    return bool(found)


def fetch_study(root: str, study_uid: str, folder: Path) -> int:
    """Fetch every instance of the study into `folder` (one file each); return the count.

    Raises:
        UserError: the service is unreachable, answers with an error, or holds no such study.
    """
    import pydicom

    client = _client(root)
    instances = service_call(
        root,
        "instance search",
        lambda: client.search_for_instances(study_instance_uid=study_uid),
    )
    if not instances:
        raise UserError(f"the DICOMweb service {root} holds no study with the given UID")
    datasets = service_call(root, "study retrieve", lambda: client.retrieve_study(study_uid))
    folder.mkdir(parents=True, exist_ok=True)
    for k, ds in enumerate(datasets):
        pydicom.dcmwrite(folder / f"{k:05d}.dcm", ds, enforce_file_format=True)
    return len(datasets)
