"""The `lumbar` command line: one Typer app whose commands parse arguments and call the library.

Heavy modules (torch, pydicom, matplotlib) are imported inside the commands so that
`lumbar --help` stays fast.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from lumbar import __version__
from lumbar.errors import UserError

app = typer.Typer(
    name="lumbar",
    help="Lumbar-spine MRI toolkit: phantom studies, DICOM ingest, grading, training, explanation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lumbar {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Lumbar-spine MRI toolkit (Al-kubaisi & Khamiss 2022, made into commands)."""


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create; one sub-folder per patient.")],
    patients: Annotated[int, typer.Option("--patients", "-n", help="Number of patients.")] = 181,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same studies.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes to use; 0 means one per CPU core.")] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the contents of a non-empty OUT.")
    ] = False,
) -> None:
    """Write phantom lumbar MRI studies as DICOM, with ground-truth labels in OUT/labels.csv."""
    from lumbar.synth import synthesize_cohort

    summary = synthesize_cohort(out, patients=patients, seed=seed, workers=workers, force=force)
    typer.echo(
        f"wrote {summary.patients} patients, {summary.files} DICOM files to {out} "
        f"(labels: {out / 'labels.csv'}) in {summary.seconds:.1f} s"
    )


@app.command()
def montage(
    study: Annotated[Path, typer.Argument(help="One patient's folder of DICOM files.")],
    out: Annotated[Path, typer.Argument(help="PNG file to write.")],
    labels: Annotated[
        Path | None,
        typer.Option(help="labels.csv of `lumbar synth`, to print each disc's grades."),
    ] = None,
) -> None:
    """Draw one study's series (and its disc grades, if given) as a single PNG."""
    from lumbar.visualize.montage import write_study_montage

    write_study_montage(study, out, labels_csv=labels)
    typer.echo(f"wrote {out}")


@app.command()
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
    from lumbar.ingest_cli import run_ingest

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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line and exit 2.

    SIGTERM is handled like Ctrl-C, so a killed command still removes its partial output.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        # in non-standalone mode Typer returns exit codes (130 after Ctrl-C) instead of exiting
        result = app(standalone_mode=False)
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        result = 130
    except typer.Abort:
        result = 130
    except typer.TyperException as err:  # usage errors: bad option, missing argument
        typer.echo(f"error: {err.format_message()} (see --help)", err=True)
        sys.exit(err.exit_code)
    if result == 130:
        typer.echo("interrupted", err=True)
    if isinstance(result, int) and result:
        sys.exit(result)


if __name__ == "__main__":
    main()
