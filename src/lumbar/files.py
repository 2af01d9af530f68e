"""Safe output handling: atomic file writes and checks of output folders before work starts."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lumbar.errors import UserError


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    Readers never see a half-written file, and an interrupted write leaves no debris. The file
    gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """Write `data` to `target` through a temporary file and an atomic rename."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: Path, text: str) -> None:
    """Write `text` (UTF-8) to `target` through a temporary file and an atomic rename."""
    write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(
    target: Path, data: Any, *, default: Callable[[Any], Any] | None = None
) -> None:
    """Write `data` as pretty-printed JSON (indent 2, a final newline) to `target` atomically;
    `default` turns values JSON does not know into ones it does (as in `json.dumps`)."""
    write_text_atomic(target, json.dumps(data, indent=2, default=default) + "\n")


def csv_text(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """The CSV text of a header and rows, lines ending in "\n" (the tables `lumbar` writes)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv_atomic(
    target: Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]
) -> None:
    """Write dict rows as CSV (a header of `columns`; other keys ignored) to `target` atomically."""
    with atomic_path(Path(target)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def prepare_output_dir(out: Path, *, force: bool) -> None:
    """Check that `out` can receive fresh output, before anything is written.

    Raises:
        UserError: `out` is a file, is non-empty without `force`, or is not writable.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(
            f"output folder {out} is not empty; allow replacing its contents, or choose another",
            option="force",
        )
    parent = out if out.exists() else _nearest_existing_parent(out)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"output folder {out} is not writable")


@contextlib.contextmanager
def staged_dir(out: Path, *, force: bool) -> Iterator[Path]:
    """Yield a hidden staging folder beside `out`; move it onto `out` only if the block succeeds.

    An interrupted or failed run leaves `out` as it was and no half-written files; staging
    folders of runs that were killed outright are removed the next time.

    Raises:
        UserError: `out` is not empty without `force`, or its folder is not writable.
    """
    out = Path(out)
    prepare_output_dir(out, force=force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(out)
        staging = out.parent / f".{out.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as err:
        raise UserError(f"cannot write to {out.parent}: {err.strerror}") from None
    try:
        yield staging
        replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_stale_staging(out: Path) -> None:
    """Remove staging folders left by runs that were killed (their process is gone)."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def replace_dir(staging: Path, out: Path) -> None:
    """Move a fully written `staging` folder onto `out`, replacing whatever was there."""
    out = Path(out)
    if out.exists():
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, trash)
        os.replace(staging, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out)


def _nearest_existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path
