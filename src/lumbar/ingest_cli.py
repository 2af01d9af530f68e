"""The terminal side of `lumbar ingest`: option parsing, a rich progress bar with files/s, and
the summary and `--explain` printouts (no patient data is ever printed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from lumbar.errors import UserError


def parse_patients(value: str | None) -> frozenset[str] | None:
    """`P1,P2` or `@file` (one pseudonym per line, # comments) -> a set of pseudonyms."""
    if value is None:
        return None
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot read patient list {path}: {err.strerror}") from None
        items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    else:
        items = [part.strip() for part in value.split(",")]
    found = frozenset(item for item in items if item)
    if not found:
        raise UserError("--patients names no pseudonyms")
    return found


def run_ingest(
    source: str,
    out: Path,
    *,
    workers: int,
    rules: Path | None,
    explain: bool,
    order: str,
    axial_selection: str,
    bit_depth: int,
    export_dicom: bool,
    study_date: str | None,
    modality: str | None,
    patients: str | None,
    report_paths: bool,
    force: bool,
    contact_sheet: Path | None = None,
) -> None:
    """Validate the options, run `lumbar.ingest.ingest` with a progress bar, print a summary."""
    from lumbar.ingest import REPORT_CSV, IngestOptions, format_explanation, ingest
    from lumbar.ingest.classify import load_rules
    from lumbar.ingest.select import AxialSelection, FrameOrder

    try:
        frame_order = FrameOrder(order)
    except ValueError:
        raise UserError(f"--order must be 'instance' or 'position', got {order!r}") from None
    try:
        axial = AxialSelection(axial_selection)
    except ValueError:
        raise UserError(
            f"--axial-selection must be 'paper' or 'stacks', got {axial_selection!r}"
        ) from None
    options = IngestOptions(
        order=frame_order,
        axial_selection=axial,
        bit_depth=bit_depth,
        export_dicom=export_dicom,
        rules=load_rules(rules),
        workers=workers,
        study_date=study_date,
        modality=modality,
        patients=parse_patients(patients),
        report_paths=report_paths,
        force=force,
    )

    def show(decisions: list) -> None:
        typer.echo(format_explanation(decisions))
        typer.echo("(* = series used)")

    with _progress() as factory:
        summary = ingest(source, out, options, progress=factory, explain=show if explain else None)
    if contact_sheet is not None:
        from lumbar.visualize.contact_sheet import write_contact_sheet

        drawn = write_contact_sheet(out, contact_sheet)
        typer.echo(f"contact sheet of {drawn} patients: {contact_sheet}")
    stats = summary.index
    rate = stats.read / stats.seconds if stats.seconds > 0 else 0.0
    typer.echo(
        f"indexed {stats.files} files ({stats.read} read at {rate:.0f} files/s, "
        f"{stats.skipped} unchanged) in {stats.seconds:.1f} s; "
        f"{summary.patients} patients, {summary.complete_patients} with all 8 images; "
        f"{summary.images} images in {out} ({summary.exported} written); "
        f"{summary.problems} problems listed in {out / REPORT_CSV}; {summary.seconds:.1f} s"
    )


class _progress:
    """A rich progress display whose factory makes one bar (with files/s) per stage."""

    def __enter__(self) -> Callable[[str, int | None], Callable[[int], None]]:
        from lumbar.progress import progress_bar

        self.progress = progress_bar("rate")
        self.progress.start()
        return self._factory

    def _factory(self, name: str, total: int | None) -> Callable[[int], None]:
        progress = self.progress
        task = progress.add_task(name, total=total, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[task].speed
            if speed:
                progress.update(task, rate=f"{speed:,.0f} files/s")

        return advance

    def __exit__(self, *_: object) -> None:
        self.progress.stop()
