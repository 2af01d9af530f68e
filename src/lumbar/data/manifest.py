"""The manifest: one CSV row per image, the contract between data and training (DESIGN.md).

Reading a manifest validates all of it before anything uses it, because a bad row found in
epoch 30 costs a training run. Every problem becomes one `UserError` line naming the file and
its row numbers (spreadsheet numbering: the header is row 1, the first image row 2), never a
patient id or an image path, which may carry a patient's name in datasets made by hand.

Values are kept as the strings read (so extra columns survive a round trip unchanged), with a
few canonical forms: grades as "0".."3" or "", split names in lower case, disc levels written
`L4-L5` when `DiscLevel.parse` understands them (other levels such as `T12-L1` are kept).
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lumbar.data.imageio import probe_image
from lumbar.errors import UserError
from lumbar.files import csv_text, write_text_atomic
from lumbar.grading import GRADES, DiscLevel, GradeField

REQUIRED_COLUMNS: tuple[str, ...] = ("image", "patient_id")
GRADE_COLUMNS: tuple[str, ...] = tuple(f.value for f in GradeField)
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: The documented columns, in the order `write_manifest` puts them; extra columns follow.
STANDARD_COLUMNS: tuple[str, ...] = (
    "image",
    "patient_id",
    "level",
    "view",
    *GRADE_COLUMNS,
    "split",
    "fold",
)
MAX_LISTED_ROWS = 8


def rows_error(source: Path | str, rows: Iterable[int], message: str) -> UserError:
    """One-line error naming `source` and (up to a few of) the spreadsheet row numbers."""
    rows = sorted(set(rows))
    shown = ", ".join(str(r) for r in rows[:MAX_LISTED_ROWS])
    more = f" and {len(rows) - MAX_LISTED_ROWS} more" if len(rows) > MAX_LISTED_ROWS else ""
    word = "row" if len(rows) == 1 else "rows"
    return UserError(f"{source}: {word} {shown}{more}: {message}")


@dataclass(frozen=True)
class Manifest:
    """A validated manifest held in memory.

    Attributes:
        path: the CSV file; image paths are relative to its folder.
        columns: column names in file order.
        rows: one dict per image, values as (canonicalised) strings.
        row_numbers: the spreadsheet row number of each row, for error messages.
    """

    path: Path
    columns: tuple[str, ...]
    rows: tuple[dict[str, str], ...]
    row_numbers: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.row_numbers:
            object.__setattr__(self, "row_numbers", tuple(range(2, len(self.rows) + 2)))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def root(self) -> Path:
        """The folder that image paths are relative to."""
        return self.path.parent

    def image_path(self, index: int) -> Path:
        """Absolute-or-root-relative path of row `index`'s image."""
        return self.root / self.rows[index]["image"]

    def column(self, name: str) -> list[str]:
        """The values of column `name` ("" for every row when the column is absent)."""
        return [row.get(name, "") for row in self.rows]

    def has_column(self, name: str) -> bool:
        """Whether the manifest has column `name`."""
        return name in self.columns

    def grades(self, column: str) -> np.ndarray:
        """Integer grades of a Table 3 column, -1 where empty (or when the column is absent)."""
        return np.array([int(v) if v else -1 for v in self.column(column)], dtype=np.int64)

    def patients(self) -> list[str]:
        """Patient id of every row."""
        return self.column("patient_id")

    def error(self, indices: Iterable[int], message: str) -> UserError:
        """A one-line `UserError` naming this file and the rows at `indices` (0-based)."""
        return rows_error(self.path, (self.row_numbers[i] for i in indices), message)

    def with_column(self, name: str, values: Sequence[str]) -> Manifest:
        """A copy with column `name` set (added after the standard columns when new)."""
        if len(values) != len(self.rows):
            raise ValueError(f"{len(values)} values for {len(self.rows)} rows")
        rows = tuple({**row, name: value} for row, value in zip(self.rows, values, strict=True))
        columns = self.columns if name in self.columns else (*self.columns, name)
        return replace(self, rows=rows, columns=columns)

    def without_column(self, name: str) -> Manifest:
        """A copy without column `name`."""
        rows = tuple({k: v for k, v in row.items() if k != name} for row in self.rows)
        return replace(self, rows=rows, columns=tuple(c for c in self.columns if c != name))

    def subset(self, indices: Sequence[int]) -> Manifest:
        """A manifest of the rows at `indices`, keeping their original row numbers."""
        return replace(
            self,
            rows=tuple(self.rows[i] for i in indices),
            row_numbers=tuple(self.row_numbers[i] for i in indices),
        )


def read_manifest(
    path: Path | str,
    *,
    check_images: bool = True,
    check_splits: bool = True,
) -> Manifest:
    """Read and validate a manifest CSV.

    Args:
        path: the manifest file.
        check_images: open every image's header (missing or unreadable files are errors).
        check_splits: validate the `split` and `fold` columns (off when they are about to be
            replaced, as by `lumbar dataset split`).

    Raises:
        UserError: one line naming the file and the offending rows.
    """
    path = Path(path)
    columns, records = read_csv_records(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise UserError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (found: {', '.join(columns) or 'none'})"
        )
    if not records:
        raise UserError(f"{path}: no image rows after the header")
    rows = [row for _, row in records]
    numbers = [number for number, _ in records]
    manifest = Manifest(path, tuple(columns), tuple(rows), tuple(numbers))
    for name in REQUIRED_COLUMNS:
        empty = [i for i, row in enumerate(rows) if not row[name]]
        if empty:
            raise manifest.error(empty, f"empty {name}")
    for column in GRADE_COLUMNS:
        if column in columns:
            _canonicalise_grades(manifest, column)
    if "level" in columns:
        for row in rows:
            row["level"] = canonical_level(row["level"])
    if check_splits:
        _check_split_columns(manifest)
    _check_duplicates(manifest)
    if check_images:
        check_image_files(manifest)
    return manifest


def read_csv_records(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Read a CSV into (header, [(row number, {column: stripped value})]); blank lines skipped.

    Raises:
        UserError: missing/unreadable file, empty file, duplicate header names, or rows with
            more fields than the header.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read ({type(err).__name__})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise UserError(f"{path}: empty file; expected a header row") from None
    except csv.Error as err:
        raise UserError(f"{path}: row 1: not valid CSV ({err})") from None
    columns = [name.strip() for name in header]
    if not any(columns):
        raise UserError(f"{path}: empty header row")
    seen: set[str] = set()
    duplicated = sorted({c for c in columns if c in seen or seen.add(c)})  # type: ignore[func-returns-value]
    if duplicated:
        raise UserError(f"{path}: row 1: duplicate column name(s) {', '.join(duplicated)}")
    records: list[tuple[int, dict[str, str]]] = []
    too_long: list[int] = []
    start = 2
    try:
        for fields in reader:
            number = start
            start = reader.line_num + 1
            if not fields or not any(f.strip() for f in fields):
                continue
            if len(fields) > len(columns):
                too_long.append(number)
                continue
            values = [f.strip() for f in fields] + [""] * (len(columns) - len(fields))
            records.append((number, dict(zip(columns, values, strict=True))))
    except csv.Error as err:
        raise UserError(f"{path}: row {start}: not valid CSV ({err})") from None
    if too_long:
        raise rows_error(path, too_long, f"more fields than the {len(columns)} header columns")
    return columns, records


def canonical_level(text: str) -> str:
    """`L4-L5` for any spelling `DiscLevel.parse` accepts; other text (e.g. `T12-L1`) unchanged."""
    if not text:
        return ""
    try:
        return DiscLevel.parse(text).value
    except ValueError:
        return text


def parse_grade(text: str) -> int | None:
    """The grade in `text` ("", "2", "2.0") or None when it is not a Table 3 grade."""
    if text == "":
        return -1
    try:
        value = float(text)
    except ValueError:
        return None
    if not value.is_integer() or int(value) not in GRADES:
        return None
    return int(value)


def _canonicalise_grades(manifest: Manifest, column: str) -> None:
    bad: list[int] = []
    for i, row in enumerate(manifest.rows):
        grade = parse_grade(row[column])
        if grade is None:
            bad.append(i)
        else:
            row[column] = "" if grade < 0 else str(grade)
    if bad:
        raise manifest.error(bad, f"{column} must be an integer grade 0-3 or empty")


def _check_split_columns(manifest: Manifest) -> None:
    if "split" in manifest.columns:
        bad: list[int] = []
        for i, row in enumerate(manifest.rows):
            value = row["split"].lower()
            if value and value not in SPLITS:
                bad.append(i)
            row["split"] = value
        if bad:
            raise manifest.error(
                bad, f"unknown split name; expected {', '.join(SPLITS)} (or empty)"
            )
        rows, mixed = _patients_in_several(manifest, "split")
        if mixed:
            raise manifest.error(
                rows,
                f"{mixed} patient(s) appear in more than one split; a patient's images "
                "must all be in one split (run `lumbar dataset split` to redo it)",
            )
    if "fold" in manifest.columns:
        bad = [
            i for i, row in enumerate(manifest.rows) if row["fold"] and not row["fold"].isdigit()
        ]
        if bad:
            raise manifest.error(bad, "fold must be a non-negative integer or empty")
        rows, mixed = _patients_in_several(manifest, "fold")
        if mixed:
            raise manifest.error(rows, f"{mixed} patient(s) appear in more than one fold")


def _check_duplicates(manifest: Manifest) -> None:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(manifest.rows):
        groups[os.path.normcase(os.path.normpath(row["image"]))].append(i)
    duplicated = [i for rows in groups.values() if len(rows) > 1 for i in rows]
    if duplicated:
        raise manifest.error(duplicated, "duplicate rows: the same image is listed more than once")


def check_image_files(manifest: Manifest) -> None:
    """Check that every image exists and its header can be read.

    Raises:
        UserError: naming the rows whose image is missing, or present but unreadable.
    """
    missing: list[int] = []
    unreadable: list[int] = []
    for i in range(len(manifest)):
        path = manifest.image_path(i)
        if not path.is_file():
            missing.append(i)
            continue
        try:
            probe_image(path)
        except Exception:  # any decoder failure means the same thing to the user
            unreadable.append(i)
    if missing:
        raise manifest.error(
            missing, f"image file not found (paths are relative to {manifest.root})"
        )
    if unreadable:
        raise manifest.error(unreadable, "image file is not a readable PNG/JPEG/DICOM image")


def ordered_columns(columns: Iterable[str]) -> list[str]:
    """Standard columns first, in DESIGN.md order, then the others in their given order."""
    columns = list(dict.fromkeys(columns))
    standard = [c for c in STANDARD_COLUMNS if c in columns]
    return standard + [c for c in columns if c not in STANDARD_COLUMNS]


def manifest_text(columns: Sequence[str], rows: Iterable[dict[str, str]]) -> str:
    """The CSV text of a manifest with the given columns (in `ordered_columns` order)."""
    ordered = ordered_columns(columns)
    return csv_text(ordered, ([row.get(c, "") for c in ordered] for row in rows))


def write_manifest(manifest: Manifest, path: Path | None = None) -> Path:
    """Write `manifest` (to `path`, default its own path) atomically; returns the path written.

    Image paths are rewritten relative to the new folder when it differs from the old one.
    """
    target = Path(path) if path is not None else manifest.path
    rows: Iterable[dict[str, str]] = manifest.rows
    if target.parent.resolve() != manifest.root.resolve():
        rows = [
            {**row, "image": relative_image_path(manifest.root / row["image"], target.parent)}
            for row in manifest.rows
        ]
    write_text_atomic(target, manifest_text(manifest.columns, rows))
    return target


def relative_image_path(image: Path, folder: Path) -> str:
    """`image` relative to `folder` with forward slashes (manifests are portable across OSes)."""
    rel = os.path.relpath(Path(image).absolute(), Path(folder).absolute())
    return Path(rel).as_posix()


def _patients_in_several(manifest: Manifest, column: str) -> tuple[list[int], int]:
    """Rows of patients whose non-empty `column` values differ, and how many such patients."""
    values: dict[str, set[str]] = defaultdict(set)
    for row in manifest.rows:
        if row[column]:
            values[row["patient_id"]].add(row[column])
    mixed = {patient for patient, seen in values.items() if len(seen) > 1}
    rows = [i for i, row in enumerate(manifest.rows) if row["patient_id"] in mixed]
    return rows, len(mixed)
