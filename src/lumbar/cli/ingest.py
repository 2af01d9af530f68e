"""`lumbar ingest`: option parsing, a rich progress bar with files/s, and the summary and
`--explain` printouts (no patient data is ever printed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from lumbar.errors import UserError


def ingest(
    source: Annotated[
        str,
        typer.Argument(
            help="Folder of DICOM files, or a DICOMweb URL (http://host:port/dicom-web)."
        ),
    ],
    out: Annotated[Path, typer.Argument(help="Output folder; rerun into it to resume.")],
    workers: Annotated[
        int, typer.Option("--workers", "-j", help="Processes; 0 = one per core.")
    ] = 0,
    rules: Annotated[
        Path | None, typer.Option(help="YAML file of series classification rules (tried first).")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Print why each series got its class.")
    ] = False,
    order: Annotated[
        str,
        typer.Option(help="Frame order for Eq. 1-2: 'instance' (InstanceNumber) or 'position'."),
    ] = "instance",
    axial_selection: Annotated[
        str,
        typer.Option(help="'paper' (Eq. 2) or 'stacks' (middle slice of each per-disc stack)."),
    ] = "paper",
    bit_depth: Annotated[int, typer.Option(help="PNG bit depth: 8 or 16.")] = 8,
    export_dicom: Annotated[
        bool,
        typer.Option("--export-dicom", help="Also write de-identified DICOM (PS3.15 Annex E)."),
    ] = False,
    study_date: Annotated[
        str | None, typer.Option(help="Study date range YYYYMMDD-YYYYMMDD (either end optional).")
    ] = None,
    modality: Annotated[
        str | None, typer.Option(help="Only studies of this modality, e.g. MR.")
    ] = None,
    patients: Annotated[
        str | None,
        typer.Option(help="Only these pseudonyms: comma-separated, or @FILE with one per line."),
    ] = None,
    report_paths: Annotated[
        bool,
        typer.Option(
            "--report-paths",
            help="Name problem files by path in the report "
            "(default: keyed hash; paths may contain patient names).",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a non-empty, non-ingest OUT.")
    ] = False,
    contact_sheet: Annotated[
        Path | None,
        typer.Option(help="Also draw the selected images (12 patients) into this PNG."),
    ] = None,
) -> None:
    """Index DICOM, pick the paper's 8 images per patient (Eq. 1-2), de-identify and export."""
    run_ingest(
        source,
        out,
        workers=workers,
        rules=rules,
        explain=explain,
        order=order,
        axial_selection=axial_selection,
        bit_depth=bit_depth,
        export_dicom=export_dicom,
        study_date=study_date,
        modality=modality,
        patients=patients,
        report_paths=report_paths,
        force=force,
        contact_sheet=contact_sheet,
    )


def parse_patients(value: str | None) -> frozenset[str] | None:
    """`P1,P2` or `@file` (one pseudonym per line, # comments) -> a set of pseudonyms."""
    if value is None:
        return None
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot read patient list {path}: {err.strerror}") from None
        items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    else:
        items = [part.strip() for part in value.split(",")]
    found = frozenset(item for item in items if item)
    if not found:
        raise UserError("--patients names no pseudonyms")
    return found


def run_ingest(
    source: str,
    out: Path,
    *,
    workers: int,
    rules: Path | None,
    explain: bool,
    order: str,
    axial_selection: str,
    bit_depth: int,
    export_dicom: bool,
    study_date: str | None,
    modality: str | None,
    patients: str | None,
    report_paths: bool,
    force: bool,
    contact_sheet: Path | None = None,
) -> None:
    """Validate the options, run `lumbar.ingest.ingest` with a progress bar, print a summary."""
    from lumbar.ingest import REPORT_CSV, IngestOptions, format_explanation, ingest
    from lumbar.ingest.classify import load_rules
    from lumbar.ingest.select import AxialSelection, FrameOrder

    try:
        frame_order = FrameOrder(order)
    except ValueError:
        raise UserError(f"--order must be 'instance' or 'position', got {order!r}") from None
    try:
        axial = AxialSelection(axial_selection)
    except ValueError:
        raise UserError(
            f"--axial-selection must be 'paper' or 'stacks', got {axial_selection!r}"
        ) from None
    options = IngestOptions(
        order=frame_order,
        axial_selection=axial,
        bit_depth=bit_depth,
        export_dicom=export_dicom,
        rules=load_rules(rules),
        workers=workers,
        study_date=study_date,
        modality=modality,
        patients=parse_patients(patients),
        report_paths=report_paths,
        force=force,
    )

    def show(decisions: list) -> None:
        typer.echo(format_explanation(decisions))
        typer.echo("(* = series used)")

    with _progress() as factory:
        summary = ingest(source, out, options, progress=factory, explain=show if explain else None)
    if contact_sheet is not None:
        from lumbar.visualize.contact_sheet import write_contact_sheet

        drawn = write_contact_sheet(out, contact_sheet)
        typer.echo(f"contact sheet of {drawn} patients: {contact_sheet}")
    stats = summary.index
    rate = stats.read / stats.seconds if stats.seconds > 0 else 0.0
    typer.echo(
        f"indexed {stats.files} files ({stats.read} read at {rate:.0f} files/s, "
        f"{stats.skipped} unchanged) in {stats.seconds:.1f} s; "
        f"{summary.patients} patients, {summary.complete_patients} with all 8 images; "
        f"{summary.images} images in {out} ({summary.exported} written); "
        f"{summary.problems} problems listed in {out / REPORT_CSV}; {summary.seconds:.1f} s"
    )


class _progress:
    """A rich progress display whose factory makes one bar (with files/s) per stage."""

    def __enter__(self) -> Callable[[str, int | None], Callable[[int], None]]:
        from lumbar.progress import progress_bar

        self.progress = progress_bar("rate")
        self.progress.start()
        return self._factory

    def _factory(self, name: str, total: int | None) -> Callable[[int], None]:
        progress = self.progress
        task = progress.add_task(name, total=total, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[task].speed
            if speed:
                progress.update(task, rate=f"{speed:,.0f} files/s")

        return advance

    def __exit__(self, *_: object) -> None:
        self.progress.stop()
