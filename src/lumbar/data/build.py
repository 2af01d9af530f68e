"""`lumbar dataset build`: join `lumbar ingest` output with gradings into a manifest.

Inputs:
    INGEST_OUT/images.csv: `patient_id` (pseudonym), `view`, `level` (axial only), `image`
        (relative to INGEST_OUT), `source_uid_hash`.
    labels: a CSV with `patient_id`, `level` and the Table 3 grade columns, keyed by the
        original PatientID (as `lumbar synth` writes `labels.csv`, or a hospital spreadsheet)
        or already by pseudonym (as the labeler exports); or a labeler database URL.

Labels keyed by original id are joined through `lumbar.pseudonym` with the secret ingest used,
so no original id reaches the output. Axial images take their level's grades; sagittal and
myelography images stay unlabelled rows (they count in the view statistics, and training on a
target skips rows without its grade).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from lumbar import __version__
from lumbar.data.imageio import probe_image
from lumbar.data.manifest import (
    GRADE_COLUMNS,
    Manifest,
    canonical_level,
    manifest_text,
    parse_grade,
    read_csv_records,
    relative_image_path,
    rows_error,
)
from lumbar.data.splits import DEFAULT_RATIOS, apply_split, split_sizes
from lumbar.data.targets import DEFAULT_TARGET
from lumbar.errors import UserError
from lumbar.files import prepare_output_dir, replace_dir, write_json_atomic, write_text_atomic
from lumbar.grading import DiscLevel, validate_grading
from lumbar.labeler.store import read_gradings
from lumbar.pseudonym import load_secret, pseudonymize

IMAGES_CSV = "images.csv"
MANIFEST_NAME = "manifest.csv"
IMAGES_REQUIRED = ("patient_id", "view", "image")
LABELS_REQUIRED = ("patient_id", "level")


@dataclass
class BuildSummary:
    """Counts of what `build_dataset` wrote, and warnings worth printing."""

    manifest: Path
    images: int
    patients: int
    labelled_images: int
    unmatched_labels: int
    split_rows: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Grades:
    values: dict[str, str]  # grade column -> "0".."3" or ""


def build_dataset(
    images: Path,
    labels: str,
    out: Path,
    *,
    split: bool = True,
    target: str = DEFAULT_TARGET,
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    seed: int = 0,
    force: bool = False,
) -> BuildSummary:
    """Write `out/manifest.csv` and `out/build.json` (provenance) from ingest output and labels.

    Args:
        images: the `lumbar ingest` output folder holding `images.csv`.
        labels: a labels CSV path, or a labeler database URL.
        out: the dataset folder to create.
        split: add a patient-level stratified `split` column (see `lumbar.data.splits`).
        target, ratios, seed: how to split.
        force: replace a non-empty `out`.

    Raises:
        UserError: bad input (one line naming the file and rows); nothing is written.
    """
    images = Path(images)
    out = Path(out)
    prepare_output_dir(out, force=force)
    image_rows = _read_images_csv(images)
    grades, labels_source = _read_labels(labels, images, {r["patient_id"] for r in image_rows})

    rows: list[dict[str, str]] = []
    used: set[tuple[str, str]] = set()
    labelled = 0
    for row in image_rows:
        key = (row["patient_id"], row["level"])
        found = grades.get(key) if row["level"] else None
        values = found.values if found else dict.fromkeys(GRADE_COLUMNS, "")
        if found:
            used.add(key)
            labelled += 1
        extra = {k: v for k, v in row.items() if k not in ("image", "patient_id", "view", "level")}
        rows.append(
            {
                "image": relative_image_path(images / row["image"], out),
                "patient_id": row["patient_id"],
                "level": row["level"],
                "view": row["view"],
                **values,
                **extra,
            }
        )
    warnings: list[str] = []
    if grades and not labelled:
        raise UserError(
            f"{labels_source}: no label matched any image of {images / IMAGES_CSV}; check that "
            "the labels' patient_id is the original PatientID and that the pseudonym secret "
            f"(INGEST_OUT/.lumbar-secret or $LUMBAR_PSEUDONYM_SECRET) is the one ingest used"
        )
    unmatched = len(set(grades) - used)
    if unmatched:
        warnings.append(f"{unmatched} labelled disc level(s) have no axial image and were skipped")
    axial_unlabelled = sum(1 for r in rows if r["level"] and not r["disc_state"])
    if axial_unlabelled:
        warnings.append(f"{axial_unlabelled} axial image(s) have no label (kept, unlabelled)")

    columns = list(dict.fromkeys(k for r in rows for k in r))
    manifest = Manifest(out / MANIFEST_NAME, tuple(columns), tuple(rows))
    split_rows: dict[str, int] = {}
    if split:
        manifest, split_warnings = apply_split(manifest, target=target, ratios=ratios, seed=seed)
        warnings += split_warnings
        split_rows = split_sizes(manifest)[0]

    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        write_text_atomic(staging / MANIFEST_NAME, manifest_text(manifest.columns, manifest.rows))
        provenance = {
            "lumbar_version": __version__,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "images_csv_sha256": _sha256(images / IMAGES_CSV),
            "labels": labels_source if "://" in labels_source else Path(labels_source).name,
            "labels_sha256": _sha256(Path(labels)) if "://" not in labels else None,
            "split": {"target": target, "ratios": list(ratios), "seed": seed} if split else None,
            "counts": {
                "images": len(rows),
                "patients": len({r["patient_id"] for r in rows}),
                "labelled_images": labelled,
            },
        }
        write_json_atomic(staging / "build.json", provenance)
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildSummary(
        manifest=out / MANIFEST_NAME,
        images=len(rows),
        patients=len({r["patient_id"] for r in rows}),
        labelled_images=labelled,
        unmatched_labels=unmatched,
        split_rows=split_rows,
        warnings=warnings,
    )


def _read_images_csv(folder: Path) -> list[dict[str, str]]:
    path = folder / IMAGES_CSV
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder (expected the output of `lumbar ingest`)")
    columns, records = read_csv_records(path)
    missing = [c for c in IMAGES_REQUIRED if c not in columns]
    if missing:
        raise UserError(f"{path}: missing required column(s) {', '.join(missing)}")
    if not records:
        raise UserError(f"{path}: no image rows")
    empty = [n for n, r in records if not r["patient_id"] or not r["image"]]
    if empty:
        raise rows_error(path, empty, "empty patient_id or image")
    seen: dict[str, int] = {}
    duplicates: list[int] = []
    for number, row in records:
        row["level"] = canonical_level(row.get("level", ""))
        key = os.path.normpath(row["image"])
        if key in seen:
            duplicates += [seen[key], number]
        seen.setdefault(key, number)
    if duplicates:
        raise rows_error(path, duplicates, "duplicate rows: the same image is listed twice")
    level_twice: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for number, row in records:
        if row["level"]:
            level_twice[(row["patient_id"], row["view"], row["level"])].append(number)
    clashes = [n for numbers in level_twice.values() if len(numbers) > 1 for n in numbers]
    if clashes:
        raise rows_error(path, clashes, "several images of one patient, view and disc level")
    missing_files: list[int] = []
    unreadable: list[int] = []
    for number, row in records:
        image = folder / row["image"]
        if not image.is_file():
            missing_files.append(number)
            continue
        try:
            probe_image(image)
        except Exception:
            unreadable.append(number)
    if missing_files:
        raise rows_error(path, missing_files, f"image file not found under {folder}")
    if unreadable:
        raise rows_error(path, unreadable, "image file is not a readable PNG/JPEG/DICOM image")
    return [row for _, row in records]


def _read_labels(
    labels: str, ingest: Path, pseudonyms: set[str]
) -> tuple[dict[tuple[str, str], _Grades], str]:
    if "://" in labels:
        return _read_labels_db(labels, pseudonyms), labels.split("://", 1)[0] + "://..."
    path = Path(labels)
    columns, records = read_csv_records(path)
    missing = [c for c in LABELS_REQUIRED if c not in columns]
    if missing:
        raise UserError(f"{path}: missing required column(s) {', '.join(missing)}")
    grade_columns = [c for c in GRADE_COLUMNS if c in columns]
    if not grade_columns:
        raise UserError(f"{path}: no grade column; expected some of {', '.join(GRADE_COLUMNS)}")
    empty = [n for n, r in records if not r["patient_id"] or not r["level"]]
    if empty:
        raise rows_error(path, empty, "empty patient_id or level")
    bad_level: list[int] = []
    for number, row in records:
        try:
            row["level"] = DiscLevel.parse(row["level"]).value
        except ValueError:
            bad_level.append(number)
    if bad_level:
        allowed = ", ".join(lv.value for lv in DiscLevel)
        raise rows_error(path, bad_level, f"unknown disc level; expected one of {allowed}")
    for column in grade_columns:
        bad = [n for n, r in records if parse_grade(r[column]) is None]
        if bad:
            raise rows_error(path, bad, f"{column} must be an integer grade 0-3 or empty")
    inconsistent: list[int] = []
    for number, row in records:
        parsed = {c: parse_grade(row[c]) for c in grade_columns}
        if all(parsed.get(c, -1) >= 0 for c in GRADE_COLUMNS):
            try:
                validate_grading(*(int(parsed[c]) for c in GRADE_COLUMNS))  # type: ignore[arg-type]
            except ValueError:
                inconsistent.append(number)
    if inconsistent:
        raise rows_error(
            path, inconsistent, "herniation type given for a disc whose state is not herniation"
        )
    # Already pseudonymous (a labeler export) when ids match ingest's pseudonyms verbatim.
    keyed_by_pseudonym = any(r["patient_id"] in pseudonyms for _, r in records)
    secret = None if keyed_by_pseudonym else load_secret(ingest)
    grades: dict[tuple[str, str], _Grades] = {}
    first: dict[tuple[str, str], int] = {}
    duplicates: list[int] = []
    for number, row in records:
        patient = row["patient_id"] if secret is None else pseudonymize(row["patient_id"], secret)
        key = (patient, row["level"])
        if key in first:
            duplicates += [first[key], number]
            continue
        first[key] = number
        values = {}
        for c in GRADE_COLUMNS:
            grade = parse_grade(row.get(c, ""))
            values[c] = "" if grade is None or grade < 0 else str(grade)
        grades[key] = _Grades(values)
    if duplicates:
        raise rows_error(path, duplicates, "duplicate rows: one patient's disc level graded twice")
    return grades, str(path)


def _read_labels_db(url: str, pseudonyms: set[str]) -> dict[tuple[str, str], _Grades]:
    """Gradings from the FaLa labeler's database: consensus where adjudicated, else the one rater.

    Levels graded by several raters without a consensus are left out (not settled).
    """
    grades: dict[tuple[str, str], _Grades] = {}
    for record in read_gradings(url):  # rows keyed like a labels CSV row, by pseudonym
        level = DiscLevel.parse(str(record["level"])).value
        values = {
            c: "" if record.get(c) in (None, "") else str(int(record[c])) for c in GRADE_COLUMNS
        }
        grades[(str(record["patient_id"]), level)] = _Grades(values)
    return grades


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
