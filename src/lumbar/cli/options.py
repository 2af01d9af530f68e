"""Options and output helpers that several commands share, declared once.

Only typer and the standard library are imported here, like every module of `lumbar.cli`.
"""

from __future__ import annotations

from typing import Annotated

import typer

ForceOption = Annotated[
    bool, typer.Option("--force", help="Replace the contents of a non-empty OUT.")
]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue the interrupted run in --out.")
]
DeviceOption = Annotated[
    str | None, typer.Option(help="auto (default: the GPU if any), cpu or cuda.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]


def echo_err(line: str) -> None:
    """Print one line on standard error (progress notes and warnings, not results)."""
    typer.echo(line, err=True)
