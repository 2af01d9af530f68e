"""The SQLite index of studies, series and instances that `lumbar ingest` builds from headers.

The index lives in OUT (`.lumbar-index.sqlite`, created readable by its owner only, mode 0600)
and holds no patient name, ID, birth date or accession number: patients appear as pseudonyms,
source files as keyed hashes of their paths (so a folder named after a patient leaves no
trace), and SeriesDescription/ProtocolName only as cleaned descriptors
(`lumbar.ingest.classify.clean_descriptor`: the words classification looks for, e.g.
"T2 TSE SAG"), since free text may hold a name. README lists every column. Files already
indexed with the same size and modification time are skipped, so a rerun after an interruption
only reads what is new. Headers are read in worker processes; only the main process writes,
one transaction per chunk.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumbar.ingest.classify import clean_descriptor
from lumbar.ingest.read import HeaderProblem, InstanceRecord, read_header
from lumbar.pseudonym import pseudonymize

INDEX_FILE = ".lumbar-index.sqlite"
# SQLite's companion files of the index (write-ahead log, shared memory, rollback journal)
INDEX_SIDE_FILES = ("-wal", "-shm", "-journal")
INDEX_MODE = 0o600
# 2: frames carry PixelSpacing; 3: descriptions cleaned. An index of another schema is
# deleted, not reused (an older one may hold free text).
SCHEMA_VERSION = "3"
CHUNK_FILES = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    file_key TEXT PRIMARY KEY,      -- keyed hash of the source path (or of a PACS instance)
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    severity TEXT NOT NULL,         -- ok, warning, error, info
    reason TEXT NOT NULL,
    sop_uid TEXT
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient TEXT NOT NULL,          -- pseudonym
    study_date TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    patient TEXT NOT NULL,
    series_number INTEGER,
    description TEXT NOT NULL,      -- cleaned descriptor, e.g. "T2 TSE SAG" (no free text)
    modality TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL,
    patient TEXT NOT NULL,
    file_key TEXT NOT NULL,
    record TEXT NOT NULL            -- InstanceRecord as JSON: no PatientID, cleaned descriptors
);
CREATE INDEX IF NOT EXISTS instances_series ON instances (series_uid);
CREATE TABLE IF NOT EXISTS exports (
    name TEXT PRIMARY KEY,          -- output path relative to OUT
    fingerprint TEXT NOT NULL,      -- source instance, frame and options it was made from
    size INTEGER NOT NULL
);
"""


@dataclass
class FileResult:
    """What reading one file gave: a record (with the pseudonym) or a problem."""

    file_key: str
    size: int
    mtime_ns: int
    severity: str
    reason: str
    patient: str = ""
    record: dict[str, Any] | None = None


@dataclass
class IndexStats:
    """Counts of one indexing pass, for the summary line and the benchmark."""

    files: int = 0
    read: int = 0
    skipped: int = 0
    problems: int = 0
    seconds: float = 0.0


def path_key(relative: str, secret: bytes) -> str:
    """Keyed hash of a source path relative to SRC: stable, and it reveals no folder names."""
    return hmac.new(
        secret, b"path:" + relative.encode("utf-8", "surrogateescape"), hashlib.sha256
    ).hexdigest()[:32]


def uid_hash(uid: str) -> str:
    """SHA-256 hex of a UID (the `source_uid_hash` column of images.csv)."""
    return hashlib.sha256(uid.strip().encode("ascii", "replace")).hexdigest()


class StudyIndex:
    """A connection to OUT's index database; create with `StudyIndex.open(out, secret)`."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.db = connection

    @classmethod
    def open(cls, path: Path, secret: bytes) -> StudyIndex:
        """Open (or create, mode 0600) the index; one made with another secret is emptied,
        one of another schema deleted (an older one may hold uncleaned descriptions)."""
        db = _connect(path)
        fingerprint = hashlib.sha256(b"lumbar-secret-check:" + secret).hexdigest()[:16]
        stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if stored and stored.get("schema") != SCHEMA_VERSION:
            db.close()
            for suffix in ("", *INDEX_SIDE_FILES):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            db = _connect(path)
        elif stored and stored.get("secret") != fingerprint:
            with _transaction(db):
                for table in ("files", "studies", "series", "instances", "exports", "meta"):
                    db.execute(f"DELETE FROM {table}")
        with _transaction(db):
            db.execute("INSERT OR REPLACE INTO meta VALUES ('secret', ?)", (fingerprint,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        return cls(db)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def known_files(self) -> dict[str, tuple[int, int]]:
        """file_key -> (size, mtime_ns) of every indexed file."""
        return {
            k: (s, m) for k, s, m in self.db.execute("SELECT file_key, size, mtime_ns FROM files")
        }

    def forget_files(self, keys: Sequence[str]) -> None:
        """Drop files (and their instances) that are gone from the source or changed."""
        with _transaction(self.db):
            for key in keys:
                self.db.execute("DELETE FROM instances WHERE file_key = ?", (key,))
                self.db.execute("DELETE FROM files WHERE file_key = ?", (key,))

    def add(self, results: Sequence[FileResult]) -> int:
        """Store one chunk of results in one transaction; returns how many were problems."""
        problems = 0
        with _transaction(self.db):
            for res in results:
                severity, reason, sop = res.severity, res.reason, None
                if res.record is not None:
                    severity, reason, sop = self._add_instance(res)
                if severity in ("error", "warning"):
                    problems += 1
                self.db.execute(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                    (res.file_key, res.size, res.mtime_ns, severity, reason, sop),
                )
        return problems

    def _add_instance(self, res: FileResult) -> tuple[str, str, str | None]:
        rec = res.record
        assert rec is not None
        sop = rec["sop_uid"]
        row = self.db.execute(
            "SELECT file_key, patient, series_uid FROM instances WHERE sop_uid = ?", (sop,)
        ).fetchone()
        if row is not None and row[0] != res.file_key:
            if row[1] != res.patient or row[2] != rec["series_uid"]:
                return (
                    "error",
                    "SOPInstanceUID also used by another file of a different "
                    "patient or series (contradictory tags); file ignored",
                    None,
                )
            return "warning", "duplicate: another file has the same SOPInstanceUID; ignored", None
        series = self.db.execute(
            "SELECT patient, study_uid FROM series WHERE series_uid = ?", (rec["series_uid"],)
        ).fetchone()
        if series is not None and (series[0] != res.patient or series[1] != rec["study_uid"]):
            return (
                "error",
                "SeriesInstanceUID shared with another patient or study "
                "(contradictory tags); file ignored",
                None,
            )
        study = self.db.execute(
            "SELECT patient FROM studies WHERE study_uid = ?", (rec["study_uid"],)
        ).fetchone()
        if study is not None and study[0] != res.patient:
            return (
                "error",
                "StudyInstanceUID shared with another patient (contradictory tags); file ignored",
                None,
            )
        self.db.execute(
            "INSERT OR IGNORE INTO studies VALUES (?, ?, ?)",
            (rec["study_uid"], res.patient, rec["study_date"]),
        )
        self.db.execute(
            "INSERT OR IGNORE INTO series VALUES (?, ?, ?, ?, ?, ?)",
            (
                rec["series_uid"],
                rec["study_uid"],
                res.patient,
                rec["series_number"],
                rec["series_description"],
                rec["modality"],
            ),
        )
        self.db.execute(
            "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?)",
            (sop, rec["series_uid"], res.patient, res.file_key, json.dumps(rec, sort_keys=True)),
        )
        warnings = rec.get("warnings") or []
        if warnings:
            return "warning", "; ".join(warnings), sop
        return "ok", "", sop

    def conflicted_files(self) -> list[str]:
        """Files ignored because another file had their UIDs (duplicates, contradictions)."""
        rows = self.db.execute(
            "SELECT file_key FROM files WHERE sop_uid IS NULL AND severity != 'ok' "
            "AND (reason LIKE 'duplicate%' OR reason LIKE '%contradictory%')"
        )
        return [row[0] for row in rows]

    def prune_empty(self) -> None:
        """Remove series and studies left without instances after files were forgotten."""
        with _transaction(self.db):
            self.db.execute(
                "DELETE FROM series WHERE series_uid NOT IN (SELECT series_uid FROM instances)"
            )
            self.db.execute(
                "DELETE FROM studies WHERE study_uid NOT IN (SELECT study_uid FROM series)"
            )

    def problems(self) -> list[tuple[str, str, str]]:
        """(file_key, severity, reason) of every file that is not plainly usable."""
        return list(
            self.db.execute(
                "SELECT file_key, severity, reason FROM files "
                "WHERE severity != 'ok' ORDER BY file_key"
            )
        )

    def instances(self) -> Iterator[tuple[str, str, InstanceRecord]]:
        """(patient pseudonym, file_key, record) of every indexed instance, in a stable order."""
        rows = self.db.execute(
            "SELECT patient, file_key, record FROM instances ORDER BY patient, series_uid, sop_uid"
        )
        for patient, file_key, record in rows:
            yield patient, file_key, InstanceRecord.from_json_dict(json.loads(record), patient)

    def series_count(self) -> int:
        """Number of series in the index."""
        return int(self.db.execute("SELECT COUNT(*) FROM series").fetchone()[0])

    def export_fingerprint(self, name: str) -> tuple[str, int] | None:
        """(fingerprint, size) recorded for an output file, if any."""
        row = self.db.execute("SELECT fingerprint, size FROM exports WHERE name = ?", (name,))
        found = row.fetchone()
        return (found[0], int(found[1])) if found else None

    def record_exports(self, items: Sequence[tuple[str, str, int]]) -> None:
        """Remember which source and options each output file was made from."""
        with _transaction(self.db):
            self.db.executemany("INSERT OR REPLACE INTO exports VALUES (?, ?, ?)", items)

    def forget_exports(self, names: Sequence[str]) -> None:
        """Forget output files that were removed."""
        with _transaction(self.db):
            self.db.executemany("DELETE FROM exports WHERE name = ?", [(n,) for n in names])


def _connect(path: Path) -> sqlite3.Connection:
    """Connect to the index, creating it (and its companion files) readable by the owner only.

    The file is made with mode 0600 before SQLite writes a byte (SQLite then gives its -wal and
    -shm files the same mode); an existing index and companions are set to 0600 too.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), INDEX_MODE)
    try:
        os.fchmod(fd, INDEX_MODE)
    finally:
        os.close(fd)
    for suffix in INDEX_SIDE_FILES:
        side = Path(f"{path}{suffix}")
        if side.exists():
            side.chmod(INDEX_MODE)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA secure_delete=ON")  # forgotten rows are overwritten, not just unlinked
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    return db


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (sqlite3 autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


# ---------------------------------------------------------------- folder indexing (workers)

_WORKER_SECRET: bytes = b""


def die_with_parent() -> None:
    """Ask Linux to end this worker process when its parent dies (even by SIGKILL), so a
    killed ingest leaves no orphaned workers behind; a no-op elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG; workers hold nothing to save
    except (OSError, AttributeError):
        pass


def _init_worker(secret: bytes) -> None:
    global _WORKER_SECRET
    _WORKER_SECRET = secret
    die_with_parent()


def read_file_result(path: str, relative: str, secret: bytes) -> FileResult:
    """Read one file's header into a `FileResult`; the original PatientID never leaves here."""
    key = path_key(relative, secret)
    try:
        stat = os.stat(path)
    except OSError as err:
        return FileResult(key, 0, 0, "error", f"cannot read file ({err.strerror})")
    try:
        record = read_header(path)
    except HeaderProblem as problem:
        return FileResult(key, stat.st_size, stat.st_mtime_ns, problem.severity, problem.reason)
    return file_result_from_record(record, key, stat.st_size, stat.st_mtime_ns, secret)


def file_result_from_record(
    record: InstanceRecord, key: str, size: int, mtime_ns: int, secret: bytes
) -> FileResult:
    """Pseudonymise a record's patient, clean its free-text descriptions (only the words
    classification needs are kept) and package it for `StudyIndex.add`."""
    data = record.to_json_dict()
    data["series_description"] = clean_descriptor(record.series_description)
    data["protocol_name"] = clean_descriptor(record.protocol_name)
    return FileResult(key, size, mtime_ns, "ok", "", pseudonymize(record.patient_id, secret), data)


def _read_chunk(items: list[tuple[str, str]]) -> list[FileResult]:
    return [read_file_result(path, rel, _WORKER_SECRET) for path, rel in items]


def index_folder(
    index: StudyIndex,
    root: Path,
    files: Sequence[Path],
    secret: bytes,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[IndexStats, dict[str, Path]]:
    """Index `files` under `root`, skipping unchanged ones; returns stats and file_key -> path.

    Files that disappeared or changed since the last run are forgotten first, so the index
    always describes the folder as it is now.
    """
    start = time.perf_counter()
    known = index.known_files()
    keys: dict[str, Path] = {}
    todo: list[tuple[str, str]] = []
    stats = IndexStats(files=len(files))
    for path in files:
        relative = path.relative_to(root).as_posix()
        key = path_key(relative, secret)
        keys[key] = path
        try:
            stat = path.stat()
        except OSError:
            todo.append((str(path), relative))
            continue
        if known.get(key) == (stat.st_size, stat.st_mtime_ns):
            stats.skipped += 1
        else:
            todo.append((str(path), relative))
    stale = [k for k in known if k not in keys]
    stale += [path_key(rel, secret) for _, rel in todo if path_key(rel, secret) in known]
    if stale:
        # A file that lost a duplicate/contradiction contest may win it now: read it again.
        again = [k for k in index.conflicted_files() if k in keys and k not in stale]
        for key in again:
            stats.skipped -= 1
            path = keys[key]
            todo.append((str(path), path.relative_to(root).as_posix()))
        todo.sort(key=lambda item: item[0])
        index.forget_files(stale + again)
    if on_progress and stats.skipped:
        on_progress(stats.skipped)
    chunks = [todo[i : i + CHUNK_FILES] for i in range(0, len(todo), CHUNK_FILES)]
    for results in _map_chunks(chunks, secret, workers):
        stats.problems += index.add(results)
        stats.read += len(results)
        if on_progress:
            on_progress(len(results))
    index.prune_empty()
    stats.problems = sum(1 for _, sev, _ in index.problems() if sev in ("error", "warning"))
    stats.seconds = time.perf_counter() - start
    return stats, keys


def _map_chunks(
    chunks: list[list[tuple[str, str]]], secret: bytes, workers: int
) -> Iterator[list[FileResult]]:
    """Results chunk by chunk, in input order, so the index is the same for any worker count."""
    import pydicom  # noqa: F401  (imported once here, inherited by forked workers)

    if workers <= 1 or len(chunks) <= 1:
        _init_worker(secret)
        for chunk in chunks:
            yield _read_chunk(chunk)
        return
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_init_worker, initargs=(secret,)
    ) as pool:
        yield from pool.map(_read_chunk, chunks)


def default_workers(requested: int) -> int:
    """`requested`, or one per available CPU core when it is 0."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
