"""The `lumbar` Typer app: the root command, one registration per command, and `main`.

Each command lives in the module of its stage (`lumbar.cli.synth`, `lumbar.cli.train`, ...),
parses its arguments and calls the library; this module only puts them in the order
`lumbar --help` lists them. A new stage adds its module and one line below.
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

from lumbar import __version__
from lumbar.cli import (
    data,
    experiment,
    explain,
    grader,
    inference,
    ingest,
    label,
    localize,
    models,
    pretrain,
    report,
    synth,
    train,
    visualize,
)
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


# The pipeline in DESIGN.md's order; groups of sub-commands are listed after the commands.
app.command()(synth.synth)
app.command()(visualize.montage)
app.command()(ingest.ingest)
app.command()(models.models)
app.add_typer(data.dataset_app, name="dataset")
app.command()(data.roi)
app.command()(train.train)
app.command()(train.evaluate)
app.command()(train.compare)
app.add_typer(label.label_app, name="label")
app.add_typer(localize.localize_app, name="localize")
app.command()(explain.explain)
app.command()(inference.predict)
app.command()(inference.export)
app.command()(inference.serve)
app.add_typer(pretrain.pretrain_app, name="pretrain")
app.add_typer(grader.grader_app, name="grader")
app.command()(experiment.experiment)
app.command()(report.report)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _in_cli_words(err: UserError) -> str:
    """The library's message, with the setting that fixes it named as its flag."""
    if err.option is None:
        return str(err)
    return f"{err} (--{err.option.replace('_', '-')})"


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line and exit 2.

    SIGTERM is handled like Ctrl-C, so a killed command still removes its partial output.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        # in non-standalone mode Typer returns exit codes (130 after Ctrl-C) instead of exiting
        result = app(standalone_mode=False)
    except UserError as err:
        typer.echo(f"error: {_in_cli_words(err)}", err=True)
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
