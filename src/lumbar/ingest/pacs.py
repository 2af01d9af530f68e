"""A PACS as an ingest source, through DICOMweb (QIDO-RS search, WADO-RS retrieve).

Indexing uses series metadata only (no pixels cross the network); just the selected instances
are then retrieved. A series whose instance count matches what the index already holds is not
fetched again, so an interrupted PACS ingest resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lumbar.errors import UserError
from lumbar.ingest.index import (
    FileResult,
    IndexStats,
    StudyIndex,
    file_result_from_record,
    path_key,
)
from lumbar.ingest.read import HeaderProblem, record_from_dataset
from lumbar.pseudonym import pseudonymize

_PATIENT_ID = "00100020"
_STUDY_UID = "0020000D"
_SERIES_UID = "0020000E"
_SOP_UID = "00080018"
_N_INSTANCES = "00201209"  # NumberOfSeriesRelatedInstances
QIDO_PAGE = 500


@dataclass(frozen=True)
class PacsFilters:
    """QIDO-RS study filters: DICOM date range `YYYYMMDD-YYYYMMDD`, modality, pseudonyms."""

    study_date: str | None = None
    modality: str | None = None
    patients: frozenset[str] | None = None


def redact_url(given: str) -> str:
    """`given`, except that a DICOMweb URL naming a study loses the study's UID (a hospital
    identifier) and all after it: `ROOT/studies/-`; anything else is returned unchanged."""
    if not is_dicomweb_url(given):
        return given
    root, studies, _ = given.partition("/studies/")
    return f"{root}/studies/-" if studies else given


def is_dicomweb_url(source: str) -> bool:
    """True when the ingest source names a DICOMweb service rather than a folder."""
    return source.startswith(("http://", "https://"))


class DicomWebSource:
    """One DICOMweb service (e.g. `http://127.0.0.1:8042/dicom-web`)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        from dicomweb_client import DICOMwebClient

        self.url = url.rstrip("/")
        self.client = DICOMwebClient(self.url, timeout=timeout)
        # Transient failures (busy server, dropped connection) are retried a few times with
        # short exponential back-off (0.25, 0.5, 1 s): an unreachable PACS fails in seconds.
        self.client.set_http_retry_params(max_attempts=4, wait_exponential_multiplier=250)

    def studies(self, filters: PacsFilters, secret: bytes) -> list[tuple[str, str]]:
        """(StudyInstanceUID, pseudonym) of matching studies, sorted by UID.

        Raises:
            UserError: the service cannot be reached or answers with an error.
        """
        search: dict[str, Any] = {}
        if filters.study_date:
            search["StudyDate"] = filters.study_date
        if filters.modality:
            search["ModalitiesInStudy"] = filters.modality
        found = self._search_all(
            "search studies",
            lambda limit, offset: self.client.search_for_studies(
                search_filters=search, fields=["PatientID"], limit=limit, offset=offset
            ),
            _STUDY_UID,
        )
        studies = []
        for item in found:
            uid = _value(item, _STUDY_UID)
            patient = _value(item, _PATIENT_ID)
            if not uid or not patient:
                continue
            pseudonym = pseudonymize(patient, secret)
            if filters.patients is not None and pseudonym not in filters.patients:
                continue
            studies.append((uid, pseudonym))
        return sorted(studies)

    def index(
        self,
        index: StudyIndex,
        filters: PacsFilters,
        secret: bytes,
        on_progress: Callable[[int], None] | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> IndexStats:
        """Index the metadata of every matching study's series into `index`."""
        start = time.perf_counter()
        stats = IndexStats()
        studies = self.studies(filters, secret)
        series_list = []
        for study_uid, _ in studies:
            found = self._search_all(
                "search series",
                lambda limit, offset, uid=study_uid: self.client.search_for_series(
                    uid, limit=limit, offset=offset
                ),
                _SERIES_UID,
            )
            for item in found:
                series_uid = _value(item, _SERIES_UID)
                if series_uid:
                    count = _value(item, _N_INSTANCES)
                    series_list.append((study_uid, series_uid, int(count) if count else None))
        series_list.sort()
        total = sum(n or 0 for _, _, n in series_list)
        stats.files = total
        if on_total:
            on_total(total)
        for study_uid, series_uid, count in series_list:
            have = index.db.execute(
                "SELECT COUNT(*) FROM instances WHERE series_uid = ?", (series_uid,)
            ).fetchone()[0]
            if count is not None and have == count:
                stats.skipped += have
                if on_progress:
                    on_progress(have)
                continue
            results = list(self._series_results(study_uid, series_uid, secret))
            stats.read += len(results)
            index.add(results)
            if on_progress:
                on_progress(len(results))
        index.prune_empty()
        stats.problems = sum(1 for _, sev, _ in index.problems() if sev in ("error", "warning"))
        stats.seconds = time.perf_counter() - start
        return stats

    def _series_results(
        self, study_uid: str, series_uid: str, secret: bytes
    ) -> Iterator[FileResult]:
        from pydicom import Dataset

        metadata = self._call(
            "retrieve series metadata",
            lambda: self.client.retrieve_series_metadata(study_uid, series_uid),
        )
        for item in sorted(metadata, key=lambda m: _value(m, _SOP_UID) or ""):
            sop = _value(item, _SOP_UID) or ""
            key = path_key(f"dicomweb/{sop}", secret)
            try:
                ds = Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")
                record = record_from_dataset(ds)
            except HeaderProblem as problem:
                yield FileResult(key, 0, 0, problem.severity, problem.reason)
                continue
            except Exception as err:
                yield FileResult(key, 0, 0, "error", f"unreadable metadata ({type(err).__name__})")
                continue
            yield file_result_from_record(record, key, 0, 0, secret)

    def retrieve(self, study_uid: str, series_uid: str, sop_uid: str) -> Any:
        """One instance, with pixels, as a pydicom Dataset."""
        return self._call(
            "retrieve instance",
            lambda: self.client.retrieve_instance(study_uid, series_uid, sop_uid),
        )

    def _search_all(
        self, what: str, search: Callable[[int, int], list[dict[str, Any]]], key: str
    ) -> list[dict[str, Any]]:
        """Every QIDO-RS result, page by page; stops when a page brings nothing new, because
        some servers ignore `offset` and would otherwise be asked forever."""
        results: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = self._call(what, lambda start=offset: search(QIDO_PAGE, start))
            fresh = {_value(item, key): item for item in page if _value(item, key) not in results}
            fresh.pop(None, None)
            results.update(fresh)  # type: ignore[arg-type]
            if len(page) < QIDO_PAGE or not fresh:
                return list(results.values())
            offset += len(page)

    def _call(self, what: str, func: Callable[[], Any]) -> Any:
        import requests

        try:
            return func()
        except requests.HTTPError as err:
            code = err.response.status_code if err.response is not None else "?"
            raise UserError(
                f"DICOMweb {what} failed at {redact_url(self.url)}: HTTP {code}"
            ) from None
        except requests.RequestException as err:
            raise UserError(
                f"cannot reach DICOMweb service {redact_url(self.url)} ({type(err).__name__})"
            ) from None


def _value(item: dict[str, Any], tag: str) -> str | None:
    """The first value of a DICOM JSON attribute, as text."""
    element = item.get(tag) or {}
    values = element.get("Value") or []
    if not values:
        return None
    value = values[0]
    if isinstance(value, dict):  # PN
        value = value.get("Alphabetic", "")
    return str(value).strip() or None
