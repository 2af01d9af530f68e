"""`lumbar montage`: one study's series in one PNG (`lumbar.visualize.montage`).

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


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
