"""`lumbar dataset build|split|stats` and `lumbar roi` (`lumbar.data`).

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli.options import ForceOption
from lumbar.errors import UserError

dataset_app = typer.Typer(
    help="Datasets: build a manifest, split it by patient, describe it.", no_args_is_help=True
)


_TargetOption = Annotated[
    str,
    typer.Option(
        help="Target to stratify on: disc_abnormal, disc_state, herniation, scs, rfs, lfs, "
        "scs_binary, rfs_binary, lfs_binary."
    ),
]


_RatiosOption = Annotated[
    str, typer.Option(help="Train/val/test shares, e.g. 75/15/10 (the paper's).")
]


_SeedOption = Annotated[int, typer.Option(help="Random seed; same seed, same split.")]


@dataset_app.command("build")
def dataset_build(
    images: Annotated[
        Path, typer.Option(help="Output folder of `lumbar ingest` (holds images.csv).")
    ],
    labels: Annotated[
        str,
        typer.Option(
            help="Labels CSV (patient_id, level, disc_state, herniation, scs, rfs, lfs), keyed "
            "by original PatientID or by pseudonym; or a labeler database URL."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Dataset folder to create (manifest.csv).")],
    split: Annotated[
        bool, typer.Option("--split/--no-split", help="Add a patient-level split column.")
    ] = True,
    target: _TargetOption = "disc_abnormal",
    ratios: _RatiosOption = "75/15/10",
    seed: _SeedOption = 0,
    force: ForceOption = False,
) -> None:
    """Join ingested images with gradings into OUT/manifest.csv (pseudonyms only)."""
    from lumbar.data.build import build_dataset
    from lumbar.data.splits import parse_ratios

    summary = build_dataset(
        images,
        labels,
        out,
        split=split,
        target=target,
        ratios=parse_ratios(ratios),
        seed=seed,
        force=force,
    )
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    sizes = ", ".join(f"{k} {v}" for k, v in summary.split_rows.items())
    typer.echo(
        f"wrote {summary.manifest}: {summary.images} images of {summary.patients} patients, "
        f"{summary.labelled_images} labelled" + (f" (split: {sizes})" if sizes else "")
    )


@dataset_app.command("split")
def dataset_split(
    manifest: Annotated[Path, typer.Argument(help="manifest.csv to split (rewritten in place).")],
    target: _TargetOption = "disc_abnormal",
    ratios: _RatiosOption = "75/15/10",
    seed: _SeedOption = 0,
    folds: Annotated[
        int,
        typer.Option(
            help="Also add a `fold` column: K patient-grouped stratified folds over train+val "
            "(test stays held out). 0: none."
        ),
    ] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Write the split manifest here instead of in place.")
    ] = None,
) -> None:
    """Add or redo the patient-level, stratified `split` column (default 75/15/10, seeded)."""
    from lumbar.data.splits import parse_ratios, split_manifest

    summary = split_manifest(
        manifest, out=out, target=target, ratios=parse_ratios(ratios), seed=seed, folds=folds
    )
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {summary.path}" + (f" ({folds} folds over train+val)" if folds else ""))
    for name, rows in summary.rows.items():
        classes = ", ".join(f"{n} {c}" for n, c in summary.classes.get(name, {}).items())
        typer.echo(
            f"  {name:<5} {rows:>6} images {summary.patients[name]:>5} patients"
            + (f"   {target}: {classes}" if classes else "")
        )


@dataset_app.command("stats")
def dataset_stats(
    manifest: Annotated[Path, typer.Argument(help="manifest.csv to describe.")],
    out: Annotated[Path, typer.Option(help="Folder for the tables (CSV) and charts (PNG).")],
    force: ForceOption = False,
) -> None:
    """Table 5 (disc state by level), stenosis grades, split sizes, and Figures 3-5 and 9."""
    from lumbar.data.stats import format_table5, write_stats

    stats = write_stats(manifest, out, force=force)
    typer.echo(format_table5(stats))
    typer.echo(f"wrote tables and charts to {out}")


def roi(
    manifest: Annotated[
        Path | None, typer.Argument(help="manifest.csv whose images to crop.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="New dataset folder (with MANIFEST), or the PNG (with --figure)."),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="grid (the paper's Eq. 3 blocks), center:F (centred fraction F), disc:MM "
            "(MM x MM mm around the disc centre from `lumbar ingest`, resampled to 224 px), none."
        ),
    ] = "grid",
    figure: Annotated[
        Path | None,
        typer.Option(help="Draw the ROI on this image (Figures 6-7) instead of cropping."),
    ] = None,
    views: Annotated[
        str,
        typer.Option(help="Comma-separated views to crop (others are kept uncropped), or 'all'."),
    ] = "axial_t2",
    credit: Annotated[
        str | None, typer.Option(help="Source/licence line printed under the figure.")
    ] = None,
    force: ForceOption = False,
) -> None:
    """Crop a dataset to the region of interest, or draw the ROI grid on an image."""
    from lumbar.data.roi import crop_manifest, draw_roi_figure, parse_roi

    chosen = parse_roi(mode)
    if out is None:
        raise UserError("--out is required")
    if figure is not None:
        if manifest is not None:
            raise UserError("give either MANIFEST (to crop) or --figure IMAGE (to draw), not both")
        typer.echo(f"wrote {draw_roi_figure(figure, out, chosen, credit=credit)}")
        return
    if manifest is None:
        raise UserError("give a MANIFEST to crop, or --figure IMAGE to draw the ROI")
    chosen_views = None if views.strip() == "all" else [v.strip() for v in views.split(",")]
    written, count = crop_manifest(manifest, out, chosen, views=chosen_views, force=force)
    typer.echo(f"wrote {count} cropped images ({chosen.spec}) and {written}")
