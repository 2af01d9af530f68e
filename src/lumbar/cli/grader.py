"""`lumbar grader train`: the sagittal grader's model from the SPIDER set (thin: see
`lumbar.grader.train`). Only typer and the standard library are imported at module level."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

grader_app = typer.Typer(
    help="The sagittal per-disc grader (SPIDER targets).", no_args_is_help=True
)


@grader_app.callback()
def grader() -> None:
    """The sagittal per-disc grader (SPIDER targets)."""


@grader_app.command("train")
def train(
    data: Annotated[Path, typer.Option(help="The spider-sagittal folder (discs.csv, series.csv).")],
    out: Annotated[Path, typer.Option(help="Folder for grader.safetensors and cv.json.")],
    cache: Annotated[
        Path | None, typer.Option(help="Folder to cache the frozen crop features in.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
) -> None:
    """Cross-validate the grader on SPIDER and fit the model on all of it (the bundled one)."""
    import torch

    from lumbar.grader.train import train_grader

    if threads is not None:
        torch.set_num_threads(threads)
    report = train_grader(data, out, cache_dir=cache, say=lambda line: typer.echo(line, err=True))
    f = report["figures"]["per_slice"]["disc_abnormal"]
    typer.echo(
        f"wrote {out / 'grader.safetensors'}; disc_abnormal F1 {f['f1'][0]:.3f} "
        f"AUC {f['auc'][0]:.3f} (5-fold CV, out of fold)"
    )
