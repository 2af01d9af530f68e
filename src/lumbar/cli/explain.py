"""`lumbar explain`: Grad-CAM overlays and the pointing game (`lumbar.explain`).

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.errors import UserError


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
    from lumbar import runs
    from lumbar.explain import explain_run, items_from_manifest, items_from_paths
    from lumbar.files import prepare_output_dir

    if (manifest is None) == (not images):
        raise UserError("give either --manifest MANIFEST or IMAGES, not both")
    prepare_output_dir(out, force=force)
    config = runs.read_config(run)
    if manifest is not None:
        items = items_from_manifest(
            manifest,
            split=None if split in (None, "all") else split,
            view=None if view == "all" else view,
            limit=limit,
            target_name=config.get("target"),
            lesions=lesions,
            ingest=ingest,
            lesions_only=lesions_only,
        )
    else:
        items = items_from_paths(images or [])[:limit]
    summary = explain_run(
        run,
        items,
        out,
        compare=compare or [],
        layer=layer,
        target=target_class,
        tolerance=tolerance,
        roi=roi,
    )
    typer.echo(f"explained {len(items)} images under {len(summary['runs'])} run(s) in {out}")
    for label, info in summary["runs"].items():
        for key, game in info.items():
            if key.startswith("pointing_game"):
                group = key.removeprefix("pointing_game").strip("_") or "all lesions"
                typer.echo(
                    f"  {label}: pointing game ({group}) {game['hits']}/{game['lesions']} = "
                    f"{game['hit_rate']:.1%} (random point: {game['random_baseline']:.1%})"
                )
