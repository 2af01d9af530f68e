"""The `lumbar` command line: one Typer app, one module per stage, each command parsing its
arguments and calling the library (`lumbar.cli.app` registers them).

Importing this package imports typer, not torch, pydicom, matplotlib or FastAPI, so
`lumbar --help` stays fast.
"""

from lumbar.cli.app import app, main

__all__ = ["app", "main"]
