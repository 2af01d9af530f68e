"""`lumbar ingest`: options, then `lumbar.ingest.ingest` with a files/s progress display; the
summary line and the `--explain` printout (no patient data is ever printed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


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
        bool,
        typer.Option(
            "--explain",
            help="Print why each series got its class (descriptions cleaned to the words "
            "classification uses, e.g. 'T2 TSE SAG').",
        ),
    ] = False,
    order: Annotated[
        str,
        typer.Option(help="Frame order for Eq. 1-2: 'instance' (InstanceNumber) or 'position'."),
    ] = "instance",
    axial_selection: Annotated[
        str,
        typer.Option(
            help="'auto' (Eq. 2 where the series has the paper's layout and the disc geometry "
            "agrees, else geometry), 'geometry' (the slice nearest each disc centre), 'paper' "
            "(Eq. 2 only, as before) or 'stacks' (middle slice of each per-disc stack)."
        ),
    ] = "auto",
    disc_centres: Annotated[
        str,
        typer.Option(
            help="Where disc centres come from: 'localizer' (the learnt sagittal localiser on "
            "each study's sagittal T2 series), 'none', or a CSV in patient mm (study_uid, "
            "level, x_mm, y_mm, z_mm), e.g. a phantom's discs.csv."
        ),
    ] = "localizer",
    bit_depth: Annotated[int, typer.Option(help="PNG bit depth: 8 or 16.")] = 8,
    export_dicom: Annotated[
        bool,
        typer.Option(
            "--export-dicom",
            help="Also write DICOM de-identified by PS3.15 Annex E (Basic Profile, Modified "
            "Dates and Clean Descriptors options).",
        ),
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
    """Index DICOM, pick the paper's 8 images per patient (Eq. 1-2), de-identify and export.

    Exit code 0: images.csv lists at least one image (unusable files: ingest-report.csv).
    Exit code 2: nothing usable was found, or an option is wrong.
    Exit code 130: interrupted.
    """
    from lumbar.ingest import REPORT_CSV, IngestOptions, format_explanation
    from lumbar.ingest import ingest as run_ingest
    from lumbar.progress import RateBars

    options = IngestOptions.from_options(
        order=order,
        axial_selection=axial_selection,
        disc_centres=disc_centres,
        rules=rules,
        patients=patients,
        bit_depth=bit_depth,
        export_dicom=export_dicom,
        workers=workers,
        study_date=study_date,
        modality=modality,
        report_paths=report_paths,
        force=force,
    )

    def show(decisions: list) -> None:
        typer.echo(format_explanation(decisions))
        typer.echo("(* = series used)")

    with RateBars("files") as bars:
        summary = run_ingest(
            source,
            out,
            options,
            progress=bars,
            explain=show if explain else None,
            contact_sheet=contact_sheet,
        )
    if contact_sheet is not None:
        typer.echo(f"contact sheet of {summary.contact_sheet_patients} patients: {contact_sheet}")
    stats = summary.index
    rate = stats.read / stats.seconds if stats.seconds > 0 else 0.0
    typer.echo(
        f"indexed {stats.files} files ({stats.read} read at {rate:.0f} files/s, "
        f"{stats.skipped} unchanged) in {stats.seconds:.1f} s; "
        f"{summary.patients} patients, {summary.complete_patients} with all 8 images; "
        f"{summary.images} images in {out} ({summary.exported} written); "
        f"{summary.problems} problems listed in {out / REPORT_CSV}; {summary.seconds:.1f} s"
    )
