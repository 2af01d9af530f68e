"""Export gradings (Table 4 per patient, or the DESIGN.md manifest) and import a labels CSV."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from lumbar.errors import UserError
from lumbar.files import csv_text, prepare_output_dir, write_text_atomic
from lumbar.grading import LEVELS, DiscLevel, validate_grading
from lumbar.labeler.catalog import Catalog, load_catalog
from lumbar.labeler.store import CONSENSUS, FIELDS, PATIENT_ID, Store, _label_rows, resolve_slot

TABLE4_HEADER = ("Disc Name", "Disc State", "Type Disc Herniation", "SCS", "RFS", "LFS")
MANIFEST_COLUMNS = ("image", "patient_id", "level", "view", *FIELDS)
MAX_IMPORT_BYTES = 50 * 1024 * 1024


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def table4_csv(grades: dict[str, dict[str, int | None]]) -> str:
    """One patient's grades in the paper's Table 4 layout (rows L12..L51; empty = not graded)."""
    rows = []
    for level in LEVELS:
        values = grades.get(level.value, dict.fromkeys(FIELDS))
        rows.append([f"L{level.code}", *(_cell(values[f]) for f in FIELDS)])
    return csv_text(TABLE4_HEADER, rows)


def export_table4(store: Store, out: Path, *, rater: str | None, force: bool = False) -> int:
    """Write `out/<pseudonym>.csv` (Table 4) for every patient with gradings; returns the count.

    Args:
        rater: a rater's name or `consensus`; None takes each level's consensus, else its only
            rater (see `lumbar.labeler.store.read_gradings`).
    """
    prepare_output_dir(out, force=force)
    by_patient: dict[str, dict[str, dict[str, int | None]]] = {}
    for row in _label_rows(store, rater):
        grades = {f: row[f] for f in FIELDS}
        by_patient.setdefault(str(row["patient_id"]), {})[str(row["level"])] = grades  # type: ignore[assignment]
    out.mkdir(parents=True, exist_ok=True)
    if force:
        for old in out.glob("*.csv"):
            old.unlink()
    for patient, grades in sorted(by_patient.items()):
        write_text_atomic(out / f"{patient}.csv", table4_csv(grades))
    return len(by_patient)


def manifest_csv(store: Store, catalog: Catalog, base: Path, *, rater: str | None) -> str:
    """The DESIGN.md manifest of every catalog image; axial images carry their level's grades."""
    grades = {(str(r["patient_id"]), str(r["level"])): r for r in _label_rows(store, rater)}
    rows = []
    for patient, images in catalog.patients.items():
        for image in images:
            labels = grades.get((patient, image.level or ""), {})
            rows.append(
                [
                    Path(os.path.relpath(image.path, base)).as_posix(),
                    patient,
                    image.level or "",
                    image.view,
                    *(_cell(labels.get(f)) for f in FIELDS),
                ]
            )
    return csv_text(MANIFEST_COLUMNS, rows)


def export_manifest(store: Store, catalog: Catalog, out: Path, *, rater: str | None) -> int:
    """Write the manifest CSV to `out` (a file); returns the number of image rows."""
    if out.is_dir():
        out = out / "manifest.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = manifest_csv(store, catalog, out.parent.resolve(), rater=rater)
    write_text_atomic(out, text)
    return text.count("\n") - 1


def parse_labels_csv(
    text: str, source: str, *, patients: set[str] | None = None
) -> list[dict[str, object]]:
    """Validate a labels CSV (patient_id, level, disc_state, herniation, scs, rfs, lfs).

    Every problem of every row is collected first, so one error names them all and nothing is
    half-imported.

    Raises:
        UserError: listing the bad rows (by line number) and why.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in ("patient_id", "level") if c not in header]
    if missing:
        raise UserError(f"{source}: missing column(s) {', '.join(missing)}")
    if not any(f in header for f in FIELDS):
        raise UserError(f"{source}: no grade column; expected some of {', '.join(FIELDS)}")
    problems: list[str] = []
    rows: list[dict[str, object]] = []
    seen: dict[tuple[str, str], int] = {}
    for line, raw in enumerate(reader, start=2):
        if None in raw:
            problems.append(f"line {line}: more fields than columns")
            continue
        cells = {k: (v or "").strip() for k, v in raw.items()}
        patient = cells.get("patient_id", "")
        if not PATIENT_ID.match(patient):
            problems.append(f"line {line}: patient_id is not a pseudonym")
            continue
        if patients is not None and patient not in patients:
            problems.append(f"line {line}: patient_id is not in the images catalog")
            continue
        try:
            level = DiscLevel.parse(cells.get("level", "")).value
        except ValueError:
            problems.append(f"line {line}: unknown disc level")
            continue
        grades: dict[str, int | None] = {}
        for f in FIELDS:
            value = cells.get(f, "")
            if value == "":
                grades[f] = None
            elif value in ("0", "1", "2", "3"):
                grades[f] = int(value)
            else:
                problems.append(f"line {line}: {f} must be a grade 0-3 or empty")
        if len(grades) != len(FIELDS):
            continue
        if all(v is not None for v in grades.values()):
            try:
                validate_grading(*(int(grades[f]) for f in FIELDS))  # type: ignore[arg-type]
            except ValueError as err:
                problems.append(f"line {line}: {err}")
                continue
        elif (
            grades["herniation"] not in (None, 0)
            and grades["disc_state"] is not None
            and grades["disc_state"] != 3
        ):
            problems.append(f"line {line}: herniation type given for a disc that is not herniated")
            continue
        key = (patient, level)
        if key in seen:
            problems.append(f"line {line}: duplicate of line {seen[key]} (same patient and level)")
            continue
        seen[key] = line
        rows.append({"patient_id": patient, "level": level, **grades})
    if problems:
        shown = "; ".join(problems[:8]) + (
            f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
        )
        raise UserError(f"{source}: nothing imported: {shown}")
    if not rows:
        raise UserError(f"{source}: no gradings to import")
    return rows


def import_labels(
    store: Store,
    path: Path,
    *,
    rater: str,
    by: str | None = None,
    replace: bool = False,
    patients: set[str] | None = None,
    images: Path | None = None,
) -> int:
    """Import a labels CSV into a rater's (or the consensus) gradings, all or nothing.

    Args:
        rater: whose gradings these are: a rater's name, or `consensus`.
        by: the account recorded in the audit trail; defaults to `rater` (an admin is required
            for the consensus).
        replace: overwrite existing gradings (each change audited) instead of refusing.
        patients: when given, patient ids must be among these (the images catalog).
        images: an ingest folder whose patients the ids must be among (as `patients`).
    """
    if images is not None:
        known = set(load_catalog(images).patients)
        patients = known if patients is None else patients & known
    try:
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise UserError(f"{path}: larger than {MAX_IMPORT_BYTES // 2**20} MiB")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read ({type(err).__name__})") from None
    rows = parse_labels_csv(text, str(path), patients=patients)
    slot = resolve_slot(store, rater)
    actor_name = by or (None if rater == CONSENSUS else rater)
    if actor_name is None:
        raise UserError(
            "importing the consensus needs the adjudicating admin's account", option="by"
        )
    actor = store.user_by_name(actor_name)
    if actor is None:
        raise UserError(f"no user named {actor_name!r}")
    if rater == CONSENSUS and not actor.is_admin:
        raise UserError(f"only an admin can write the consensus; {actor_name!r} is not one")
    return store.import_gradings(rows, slot, by=actor.id, replace=replace)


def export_gradings(
    store: Store,
    out: Path,
    *,
    format: str = "table4",
    rater: str | None = None,
    images: Path | None = None,
    force: bool = False,
) -> int:
    """Export gradings as Table 4 CSVs into the folder `out` (`format` "table4") or as a
    manifest of the ingest folder `images` (`format` "manifest"); returns how many patient
    files or image rows were written.

    Raises:
        UserError: an unknown format, or a manifest without the ingest folder.
    """
    if format == "table4":
        return export_table4(store, out, rater=rater, force=force)
    if format == "manifest":
        if images is None:
            raise UserError(
                "a manifest export needs the ingest folder of the images it lists",
                option="images",
            )
        return export_manifest(store, load_catalog(images), out, rater=rater)
    raise UserError(f"export format must be table4 or manifest, not {format!r}", option="format")
