"""`lumbar explain`: Grad-CAM overlays and the pointing game (`lumbar.explain`).

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def explain(
    run: Annotated[Path, typer.Argument(help="Run folder of `lumbar train` to explain.")],
    images: Annotated[
        list[Path] | None, typer.Argument(help="Image files (instead of --manifest).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the overlays.")] = Path("explain"),
    manifest: Annotated[
        Path | None, typer.Option(help="Explain this manifest's images (one split, one view).")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Split of --manifest: train, val, test, or 'all'.")
    ] = "test",
    view: Annotated[
        str, typer.Option(help="View of --manifest to explain, or 'all'.")
    ] = "axial_t2",
    limit: Annotated[int | None, typer.Option(help="At most this many images.")] = None,
    compare: Annotated[
        list[Path] | None,
        typer.Option(help="More run folders drawn beside RUN in one grid (repeatable)."),
    ] = None,
    layer: Annotated[
        str,
        typer.Option(help="Grad-CAM layer: features (trunk output), last_conv, or a module path."),
    ] = "features",
    target_class: Annotated[
        int | None,
        typer.Option("--class", help="Class index to explain (default: the predicted class)."),
    ] = None,
    lesions: Annotated[
        Path | None,
        typer.Option(help="lesions.csv of `lumbar synth`: score the pointing game."),
    ] = None,
    ingest: Annotated[
        Path | None, typer.Option(help="Ingest folder of the manifest (its pseudonym secret).")
    ] = None,
    lesions_only: Annotated[
        bool, typer.Option("--lesions-only", help="Only images with a lesion box.")
    ] = False,
    tolerance: Annotated[
        float, typer.Option(help="Pointing game: pixels of margin around each lesion box.")
    ] = 0.0,
    roi: Annotated[
        str | None,
        typer.Option(help="Crop before the model (default: the run's loader ROI, e.g. none)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty OUT.")] = False,
) -> None:
    """Grad-CAM heat maps of a run's predictions (Figures 17-18), and the pointing game."""
    from lumbar.explain import explain as explain_images

    summary = explain_images(
        run, out, images=images or [], manifest=manifest, split=split, view=view, limit=limit,
        lesions=lesions, ingest=ingest, lesions_only=lesions_only, force=force,
        compare=compare or [], layer=layer, target=target_class, tolerance=tolerance, roi=roi,
    )  # fmt: skip
    typer.echo(
        f"explained {summary['explained']} images under {len(summary['runs'])} run(s) in {out}"
    )
    for label, info in summary["runs"].items():
        for key, game in info.items():
            if key.startswith("pointing_game"):
                group = key.removeprefix("pointing_game").strip("_") or "all lesions"
                typer.echo(
                    f"  {label}: pointing game ({group}) {game['hits']}/{game['lesions']} = "
                    f"{game['hit_rate']:.1%} (random point: {game['random_baseline']:.1%})"
                )
