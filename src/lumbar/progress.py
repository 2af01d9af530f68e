"""The one progress-bar layout of `lumbar`: what is done, of how many, extra live fields, time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(*fields: str, disable: bool = False) -> Progress:
    """A rich Progress on stderr: description, bar, done/total, `{task.fields[f]}`, times.

    Args:
        fields: names of task fields shown after the count (e.g. "rate", "loss"); each task
            must be added with these fields set.
        disable: build a silent bar (for library use and tests).
    """
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


class TrainingBars:
    """Progress bars of a training loop, each with a live `info` text (loss, images/s).

    Every method is a no-op when disabled (--quiet, or the other processes of a torchrun job).
    """

    def __init__(self, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            self.bar = progress_bar("info")
            self.bar.start()

    def task(self, description: str, total: int, done: int = 0) -> Any:
        """A new bar, `done` of `total` complete (None when disabled)."""
        if self.bar is None:
            return None
        return self.bar.add_task(description, total=total, completed=done, info="")

    def advance(self, task: Any, amount: int = 1, info: str | None = None) -> None:
        """Move `task` on by `amount`; `info`, when given, replaces its text."""
        if self.bar is None or task is None:
            return
        if info is None:
            self.bar.advance(task, amount)
        else:
            self.bar.update(task, advance=amount, info=info)

    def hide(self, task: Any) -> None:
        """Remove a finished bar from the display."""
        if self.bar is not None and task is not None:
            self.bar.update(task, visible=False)

    def close(self) -> None:
        """Stop drawing (call once, e.g. in a `finally`)."""
        if self.bar is not None:
            self.bar.stop()


class RateBars:
    """A display whose factory makes one bar per stage, with its rate (e.g. files/s).

    Use as a context manager; the factory `(name, total) -> advance(n)` is what
    `lumbar.ingest.ingest` takes as `progress`.
    """

    def __init__(self, unit: str = "files") -> None:
        self.unit = unit
        self.progress: Any = None

    def __enter__(self) -> Callable[[str, int | None], Callable[[int], None]]:
        self.progress = progress_bar("rate")
        self.progress.start()
        return self.bar

    def bar(self, name: str, total: int | None) -> Callable[[int], None]:
        """A new bar for the stage `name` of `total` steps (None: unknown)."""
        progress = self.progress
        task = progress.add_task(name, total=total, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[task].speed
            if speed:
                progress.update(task, rate=f"{speed:,.0f} {self.unit}/s")

        return advance

    def __exit__(self, *_: object) -> None:
        self.progress.stop()
