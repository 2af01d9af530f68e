"""`lumbar experiment`: options, then `lumbar.experiment.run_experiment`.

Imports only typer and the standard library at module level (`lumbar --help` stays light).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.errors import UserError


def experiment(
    config: Annotated[
        Path,
        typer.Argument(
            help="Experiment YAML: datasets, pretraining, and the grid of backbones, sources, "
            "modes, ROI settings, targets and seeds or folds (see configs/paper.yaml)."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Experiment folder; rerunning the command continues it (finished runs are "
            "skipped, a killed run resumes from its last epoch).",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="local: worker processes on this machine. ray: one Ray task per run on the "
            "cluster at --address; the --out folder (and the datasets) must then be on a "
            "filesystem shared by every node, at the same path.",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address (e.g. ray://head:10001 or auto); none: local."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Runs at a time; each gets cores / workers torch threads (0: one per 2 cores)."
        ),
    ] = 0,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="List the runs with estimated and naive cost; write nothing."
        ),
    ] = False,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Skip EXP/report.html at the end.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No per-run progress lines.")] = False,
) -> None:
    """Run the paper's study (Procedures 1-3) from one config: a resumable grid of runs.

    Builds the datasets, pretrains, trains every run of the grid (in parallel, sharing the
    frozen-layer features between runs), then writes EXP/report.html with the paper's tables.
    """
    if out is None and not dry_run:
        raise UserError("--out is required (the experiment folder)")
    from lumbar.experiment import run_experiment

    result = run_experiment(
        config,
        out if out is not None else Path("experiment"),
        executor=executor,
        workers=workers,
        address=address,
        dry_run=dry_run,
        progress=not quiet,
        report=not no_report,
        echo=typer.echo,
    )
    if dry_run:
        return
    if result.report is not None:
        typer.echo(f"report: {result.report}")
    if result.failed:
        for failed in result.failed:
            typer.echo(f"not finished: {failed.id}: {failed.error}", err=True)
        raise typer.Exit(1)
