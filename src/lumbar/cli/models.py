"""`lumbar models`: the backbones, their weight sources, and ImageNet downloads.

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer


def models(
    download: Annotated[
        list[str] | None,
        typer.Option(
            "--download",
            metavar="BACKBONE",
            help="Download this backbone's ImageNet weights into the torch hub cache "
            "(checked against their SHA-256); repeat for several, or 'all'.",
        ),
    ] = None,
) -> None:
    """List the backbones: weight sources, parameters, GFLOPs, ImageNet weights on this machine."""
    from rich.console import Console
    from rich.table import Table

    from lumbar.models import download_imagenet_weights, list_backbones
    from lumbar.models.summary import backbone_summaries

    for name in list_backbones() if download == ["all"] else download or []:
        path = download_imagenet_weights(name)
        typer.echo(f"{name}: {path}")
    rows = backbone_summaries()
    missing = [row for row in rows if not row.imagenet_available]
    caption = (
        "* the paper's four. --weights: imagenet, a .pth/.safetensors file (optional "
        "<file>.json sidecar declaring its preprocessing), a train/pretrain run folder, or "
        "scratch. GFLOPs: multiply-adds at 224x224."
    )
    if missing:
        files = ", ".join(row.imagenet_file for row in missing)
        caption += (
            f" Missing ImageNet files ({files}) go in {missing[0].imagenet_path.parent}/,"
            " or run: lumbar models --download NAME"
        )
    table = Table(title="lumbar backbones", caption=caption, caption_justify="left")
    table.add_column("backbone", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("GFLOPs", justify="right")
    table.add_column("feat", justify="right")
    table.add_column("weight sources")
    table.add_column("ImageNet input")
    for row in rows:
        here = "[green]here[/green]" if row.imagenet_available else "[red]missing[/red]"
        table.add_row(
            row.name + (" *" if row.paper else ""),
            f"{row.params / 1e6:.2f} M",
            f"{row.gflops:.2f}",
            str(row.feature_dim),
            f"imagenet ({here}), file, run, scratch",
            row.preprocessing,
        )
    Console().print(table)
    _bundled_models(Console())


def _bundled_models(console: object) -> None:
    """The trained models shipped inside the package, with their model cards."""
    from rich.table import Table

    from lumbar.localize.localizer import bundled_summary

    table = Table(title="bundled models (work offline)", caption_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("command")
    table.add_column("file")
    table.add_column("size", justify="right")
    table.add_column("model card")
    for row in [bundled_summary()]:
        table.add_row(row["name"], row["command"], row["file"], row["size"], row["card"])
    console.print(table)  # type: ignore[attr-defined]
