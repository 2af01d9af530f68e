"""`lumbar report EXP` (registered by `lumbar.cli.app`); imports only typer and
the standard library at module level, so `lumbar --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    exp: Annotated[
        Path, typer.Argument(help="Experiment folder written by `lumbar experiment --out EXP`.")
    ],
    gradcam: Annotated[
        bool,
        typer.Option(
            "--gradcam/--no-gradcam",
            help="Draw Grad-CAM grids like Figures 17-18 (loads the first seed's models).",
        ),
    ] = True,
    gradcam_images: Annotated[
        int, typer.Option(min=1, max=12, help="Test images per Grad-CAM grid.")
    ] = 4,
) -> None:
    """Write EXP/report.html (one self-contained file to send) and EXP/report.md.

    The report sets this experiment's results beside the paper's published numbers: Table 5 and
    Figures 3-5 of the dataset, the ROI, Tables 6-9, 11 and 13 (mean and 95% interval over
    seeds or folds), the Eq. 8 improvement rates of Tables 10, 12 and 14, learning curves,
    confusion matrices and Grad-CAM grids. Missing or failed runs are marked as missing.
    Rerun it at any time, e.g. while the experiment is still running.
    """
    from lumbar.progress import progress_bar
    from lumbar.report import write_report

    parts = ["dataset", "ROI figure", "tables", "Grad-CAM", "writing"]
    notes: list[str] = []
    with progress_bar("part") as bar:
        task = bar.add_task("report", total=len(parts), part="")

        def step(name: str) -> None:
            done = parts.index(name) if name in parts else 0
            bar.update(task, completed=done, part=name)

        html, md = write_report(
            exp, gradcam=gradcam, gradcam_images=gradcam_images, step=step, log=notes.append
        )
        bar.update(task, completed=len(parts), part="done")
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {html} and {md}")
