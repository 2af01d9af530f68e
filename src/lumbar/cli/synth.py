"""`lumbar synth`: phantom studies and pretraining image sets (`lumbar.synth`).

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli.options import ForceOption
from lumbar.errors import UserError


def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create.")],
    kind: Annotated[
        str,
        typer.Option(
            help="lumbar: patient studies as DICOM (one folder each) with labels.csv; "
            "source: labelled brain-tumour phantoms in class folders with classes.yaml "
            "(Procedure 2); unlabelled: a folder tree of MRI PNG/DICOM (Procedure 3)."
        ),
    ] = "lumbar",
    patients: Annotated[
        int, typer.Option("--patients", "-n", help="Number of patients (lumbar).")
    ] = 181,
    images: Annotated[int, typer.Option(help="Number of images (source, unlabelled).")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 0,
    workers: Annotated[
        int, typer.Option(help="Processes to use (lumbar); 0 means one per CPU core.")
    ] = 0,
    force: ForceOption = False,
    protocol: Annotated[
        str,
        typer.Option(
            help="lumbar: how the axial T2 series are acquired: paper (5 slices per disc, the "
            "paper's layout), angled (3-6 per disc), parallel (one continuous stack), lower3 "
            "(L3-S1 only), reversed (stored head first), split (two series), nosagt2 (no "
            "sagittal T2); thoracic (sagittal view up to T9) or cutsacrum (sagittal view cuts "
            "the sacrum); or mixed (one of these per patient). discs.csv holds the truth."
        ),
    ] = "paper",
) -> None:
    """Write phantom MRI: lumbar studies with ground truth, or pretraining image sets."""
    if kind == "lumbar":
        from lumbar.synth import synthesize_cohort
        from lumbar.synth.protocols import Protocol

        summary = synthesize_cohort(
            out,
            patients=patients,
            seed=seed,
            workers=workers,
            force=force,
            protocol=Protocol.parse(protocol),
        )
        typer.echo(
            f"wrote {summary.patients} patients, {summary.files} DICOM files to {out} "
            f"(labels: {out / 'labels.csv'}, true discs: {out / 'discs.csv'}) "
            f"in {summary.seconds:.1f} s"
        )
    elif kind in ("source", "unlabelled"):
        from lumbar.synth.sets import synthesize_source_set, synthesize_unlabelled_set

        writer = synthesize_source_set if kind == "source" else synthesize_unlabelled_set
        result = writer(out, images=images, seed=seed, force=force)
        typer.echo(f"wrote {result.images} {kind} images to {out} in {result.seconds:.1f} s")
    else:
        raise UserError(f"unknown --kind {kind!r}; choose lumbar, source or unlabelled")
