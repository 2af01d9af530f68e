"""`lumbar localize`: find and name the discs on sagittal images and studies; train; measure.

`lumbar localize INPUT... --out DIR` localises (the default sub-command, `find`, may be left
out); `lumbar localize train` and `lumbar localize cv` make and measure a run. Only typer and
the standard library are imported here; the stage (and torch with it) when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from lumbar.cli.options import echo_err

DEFAULT_SPIDER = Path("../shared/data/spider-sagittal")


class _FindByDefault(TyperGroup):
    """`lumbar localize IMG...` means `lumbar localize find IMG...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["find", *args]
        return super().parse_args(ctx, args)


localize_app = typer.Typer(
    cls=_FindByDefault,
    help="Find and name every disc (T9-T10 ... L5-S1) on sagittal MRI: "
    "lumbar localize INPUT... --out DIR.",
    no_args_is_help=True,
)


@localize_app.command()
def find(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            help="PNG/JPEG images, DICOM slices or DICOM study folders (sagittal T2 used).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for discs.csv and overlays.")],
    model: Annotated[
        Path | None,
        typer.Option(help="A `lumbar localize train` run folder (default: bundled weights)."),
    ] = None,
) -> None:
    """Localise every INPUT with one model load: DIR/discs.csv, overlays, contact sheet.

    DICOM files and study folders are named by their patient's keyed pseudonym (secret:
    $LUMBAR_PSEUDONYM_SECRET, else DIR/.lumbar-secret, as `lumbar ingest`), never by their name.
    """
    from lumbar.localize import load_localizer
    from lumbar.localize.batch import localize_inputs

    localizer = load_localizer(model)
    result = localize_inputs(inputs, out, localizer, echo=echo_err)
    typer.echo(
        f"{result.done} of {result.done + result.failed} inputs localised, {result.discs} discs: "
        f"{out / 'discs.csv'}"
    )
    if result.failed:
        raise typer.Exit(1)


@localize_app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Run folder (finished rounds are kept).")],
    data: Annotated[Path, typer.Option(help="The spider-sagittal folder.")] = DEFAULT_SPIDER,
    steps: Annotated[int, typer.Option(help="Training steps per round.")] = 800,
    phantoms: Annotated[int, typer.Option(help="Phantom sagittal slices added.")] = 60,
    negatives: Annotated[int, typer.Option(help="Images without a spine added.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    final: Annotated[
        bool,
        typer.Option(
            "--final/--no-final",
            help="Train a sixth model on every slice (default); without it RUN's weights are "
            "CV round 0's (trained on folds 1-4).",
        ),
    ] = True,
) -> None:
    """5-fold patient-grouped CV rounds, the final model, its decoding fitted out of fold.

    The defaults reproduce the bundled weights (about 70 min on one CPU core).
    """
    from lumbar.localize.run import train_run
    from lumbar.localize.train import TrainSettings

    settings = TrainSettings(steps=steps, phantoms=phantoms, negatives=negatives, seed=seed)
    path = train_run(data, out, settings, log=echo_err, final=final)
    typer.echo(f"weights: {path}")


@localize_app.command()
def cv(
    run: Annotated[Path, typer.Argument(help="A `lumbar localize train` run folder.")],
    data: Annotated[Path, typer.Option(help="The spider-sagittal folder.")] = DEFAULT_SPIDER,
    resamples: Annotated[int, typer.Option(help="Patient bootstrap resamples.")] = 2000,
) -> None:
    """Out-of-fold figures of a run per sequence (95% patient-bootstrap intervals): RUN/cv.csv."""
    from lumbar.localize.run import evaluate_run, figure_rows, write_evaluation

    figures, oof, _, _ = evaluate_run(data, run, resamples)
    write_evaluation(run, figures, oof)
    for row in figure_rows(figures):
        typer.echo(_format(row))


def _format(row: dict[str, Any]) -> str:
    return (
        f"{row['sequence']:>9} {row['figure']:<17} {row['value']:.3f} "
        f"[{row['low']:.3f}, {row['high']:.3f}]  ({row['discs']} discs, {row['slices']} slices)"
    )
