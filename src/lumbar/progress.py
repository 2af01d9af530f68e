"""The one progress-bar layout of `lumbar`: what is done, of how many, extra live fields, time."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress


def progress_bar(*fields: str, disable: bool = False) -> Progress:
    """A rich Progress on stderr: description, bar, done/total, `{task.fields[f]}`, times.

    Args:
        fields: names of task fields shown after the count (e.g. "rate", "loss"); each task
            must be added with these fields set.
        disable: build a silent bar (for library use and tests).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(f"{{task.fields[{name}]}}") for name in fields),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=disable,
        transient=False,
    )
