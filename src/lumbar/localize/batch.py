"""`lumbar localize INPUT... --out DIR`: many images and studies, the model loaded once.

Writes DIR/discs.csv (one row per disc: the input, level, x, y, confidence, and
x_mm, y_mm, z_mm for DICOM), DIR/inputs.csv (one row per input: status, discs, overlay),
one overlay PNG per input and DIR/contact-sheet.png. An input that fails (unreadable, no
sagittal T2 series, no geometry) gets one line and its status; the others go on.

A PNG/JPEG input is named by its path as given (the user's own file name); a DICOM file or
study folder, whose name may be a patient's, by the keyed pseudonym of its PatientID
(`lumbar.pseudonym`, the secret as `lumbar ingest` and `lumbar predict` take it:
$LUMBAR_PSEUDONYM_SECRET, else DIR/.lumbar-secret), in CSVs, overlay titles and messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumbar.data.imageio import RASTER_SUFFIXES, is_dicom, read_native
from lumbar.errors import UserError
from lumbar.files import write_csv_atomic
from lumbar.ingest.read import iter_files, patient_pseudonym
from lumbar.localize.decode import Disc
from lumbar.localize.localizer import Localizer
from lumbar.localize.preprocess import window
from lumbar.localize.study import PatientDisc, localize_study, read_plane, to_patient
from lumbar.pseudonym import load_secret
from lumbar.visualize.discs import draw_discs, write_overlay, write_overlay_sheet

DISC_COLUMNS = ("input", "level", "x", "y", "confidence", "x_mm", "y_mm", "z_mm")
INPUT_COLUMNS = ("input", "status", "discs", "named", "overlay")
OVERLAYS = "overlays"


@dataclass(frozen=True)
class BatchResult:
    """How many inputs were localised, and how many failed."""

    done: int
    failed: int
    discs: int


def _read(path: Path) -> tuple[np.ndarray, tuple[float, float] | None, object]:
    """Pixels, spacing and plane (DICOM) of one image file; UserError when unusable."""
    from pydicom.errors import InvalidDicomError

    plane = read_plane(path) if is_dicom(path) else None
    try:
        pixels = read_native(path)
    except (OSError, ValueError, AttributeError, InvalidDicomError) as err:
        # pydicom: AttributeError for a file without PixelData, InvalidDicomError for a damaged one
        # an OSError's text may hold the path; its strerror does not
        text = (err.strerror if isinstance(err, OSError) else None) or str(err)
        reason = text.splitlines()[0] if text else type(err).__name__
        raise UserError(f"cannot read the image ({reason})") from None
    spacing = (plane.row_spacing, plane.col_spacing) if plane is not None else None
    return pixels, spacing, plane


class _Names:
    """What an input is called in outputs: PNG/JPEG its path as given, DICOM its patient's
    pseudonym (`input N` when no header can be read, or when a missing input is not named as
    a PNG/JPEG); the secret is loaded on first need."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.secret: bytes | None = None

    def __call__(self, index: int, given: str) -> str:
        path = Path(given)
        if path.is_dir():
            files = iter_files(path)
        elif path.is_file():
            if not _is_dicom(path):
                return given
            files = [path]
        elif path.suffix.lower() in RASTER_SUFFIXES:
            return given  # a missing PNG/JPEG: the user's own file name
        else:
            files = []  # missing: perhaps a study folder or DICOM file, named by a patient
        if files:
            if self.secret is None:
                self.secret = load_secret(self.out, create=True)
            name = patient_pseudonym(files, self.secret)
            if name is not None:
                return name
        return f"input {index + 1}"


def _is_dicom(path: Path) -> bool:
    try:
        return is_dicom(path)
    except OSError:
        return True  # unreadable: not named by its file name


def _rows(name: str, discs: list[Disc] | list[PatientDisc]) -> list[dict[str, object]]:
    rows = []
    for d in discs:
        row: dict[str, object] = {
            "input": name,
            "level": d.level or "",
            "x": round(d.x, 2),
            "y": round(d.y, 2),
            "confidence": round(d.confidence, 4),
        }
        if isinstance(d, PatientDisc):
            row.update(x_mm=round(d.x_mm, 2), y_mm=round(d.y_mm, 2), z_mm=round(d.z_mm, 2))
        rows.append(row)
    return rows


def localize_inputs(
    inputs: list[str],
    out: Path,
    localizer: Localizer,
    echo: Callable[[str], None] = print,
) -> BatchResult:
    """Localise every input into `out`; one line per failed input or input without discs."""
    out = Path(out)
    (out / OVERLAYS).mkdir(parents=True, exist_ok=True)
    disc_rows: list[dict[str, object]] = []
    input_rows: list[dict[str, object]] = []
    sheet: list[tuple[str, Path]] = []
    failed = 0
    names = _Names(out)
    for index, given in enumerate(inputs):
        path = Path(given)
        name = names(index, given)
        overlay = out / OVERLAYS / f"{index:03d}.png"
        try:
            if path.is_dir():
                study = localize_study(path, localizer)
                image, discs = study.image, study.discs
                title = f"{name}: central sagittal T2 of {study.slices} fused"
            elif path.is_file():
                pixels, spacing, plane = _read(path)
                found = localizer.find([pixels], [spacing])[0]
                discs = to_patient(found, plane) if plane is not None else found  # type: ignore[arg-type]
                image, title = pixels, name if name != given else path.name
            else:
                raise UserError("no such file or folder")
        except UserError as err:
            failed += 1
            echo(f"{name}: {err}")
            input_rows.append({"input": name, "status": f"failed: {err}", "discs": 0})
            continue
        write_overlay(draw_discs(window(image), discs, title), overlay)
        sheet.append((f"{index:03d} {name if name != given else path.name}", overlay))
        named = sum(1 for d in discs if d.level is not None)
        if not discs:
            echo(f"{name}: no discs found")
        input_rows.append(
            {
                "input": name,
                "status": "ok" if discs else "no discs found",
                "discs": len(discs),
                "named": named,
                "overlay": f"{OVERLAYS}/{overlay.name}",
            }
        )
        disc_rows += _rows(name, discs)
    write_csv_atomic(out / "discs.csv", disc_rows, DISC_COLUMNS)
    write_csv_atomic(out / "inputs.csv", input_rows, INPUT_COLUMNS)
    write_overlay_sheet(sheet, out / "contact-sheet.png")
    return BatchResult(len(inputs) - failed, failed, len(disc_rows))
