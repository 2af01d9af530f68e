"""The report's figures: dataset charts (Table 5, Figures 3-5), the ROI figure (Figures 6-7),
mean learning curves, summed confusion matrices and Grad-CAM grids like Figures 17-18.

Each figure is drawn by `lumbar.visualize` (through `lumbar.data.stats`, `lumbar.data.roi` and
`lumbar.explain` where those own the data); this module picks the data and the files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumbar.data.imageio import read_uint8
from lumbar.data.manifest import read_manifest
from lumbar.data.roi import draw_roi_figure, parse_roi
from lumbar.data.stats import write_stats
from lumbar.errors import UserError
from lumbar.explain import explain_run, items_from_manifest
from lumbar.report.collect import DONE, Experiment, RunRecord
from lumbar.report.tables import SOURCE_TITLES, ResultTable
from lumbar.visualize.charts import confusion_matrix, mean_learning_curves
from lumbar.visualize.overlays import compare_grid

__all__ = [
    "DatasetFigures",
    "GradcamFigure",
    "confusion_figures",
    "dataset_figures",
    "gradcam_figures",
    "learning_curves",
    "roi_figure",
]


@dataclass
class DatasetFigures:
    """One dataset's statistics and charts (`lumbar.data.stats.write_stats`)."""

    name: str
    stats: Any  # lumbar.data.stats.DatasetStats
    figures: dict[str, Path]  # "fig3" / "fig4" / "fig5" / "splits" -> PNG
    synthetic: bool


def is_synthetic(entry: dict[str, Any]) -> bool:
    """Whether a dataset comes from `lumbar synth` phantoms: the plan says so, or it has a
    lesions.csv (written only by the phantom generator)."""
    if entry.get("synthetic"):
        return True
    if entry.get("lesions"):
        return True
    studies = entry.get("studies")
    return bool(studies) and (Path(studies) / "lesions.csv").is_file()


def dataset_figures(name: str, entry: dict[str, Any], folder: Path) -> DatasetFigures | None:
    """Table 5 counts and Figures 3-5 of a dataset's manifest (None when it is unreadable)."""

    manifest = entry.get("manifest")
    if not manifest or not Path(manifest).is_file():
        return None
    stats = write_stats(Path(manifest), folder, force=True)
    names = {
        "fig3": "fig3_images_by_view.png",
        "fig4": "fig4_disc_state.png",
        "fig5": "fig5_disc_state_by_level.png",
        "splits": "fig9_splits.png",
    }
    figures = {k: folder / v for k, v in names.items() if (folder / v).is_file()}
    return DatasetFigures(name, stats, figures, is_synthetic(entry))


def first_axial_image(manifest_path: Path) -> Path | None:
    """The first axial T2 image of a manifest (any image when there is no view column)."""

    manifest = read_manifest(Path(manifest_path))
    views = manifest.column("view") if manifest.has_column("view") else [""] * len(manifest)
    for i, view in enumerate(views):
        if view in ("axial_t2", "") and manifest.image_path(i).is_file():
            return manifest.image_path(i)
    return None


def roi_figure(manifest_path: Path, roi: str, out: Path) -> Path | None:
    """Figures 6-7 (block grid and crop) on one axial image of the dataset."""

    image = first_axial_image(manifest_path)
    if image is None:
        return None
    return draw_roi_figure(image, out, parse_roi(roi))


def learning_curves(table: ResultTable, out: Path) -> Path | None:
    """Mean training/validation loss and validation accuracy per epoch of each row of a table,
    with the min-max band over its seeds/folds (None when no run has a history)."""
    rows = [(row.label, [r.history for r in row.runs if r.history]) for row in table.rows]
    rows = [(label, hs) for label, hs in rows if hs]
    if not rows:
        return None
    title = f"Learning curves, {_table_name(table)} (mean; band: min-max over runs)"
    return mean_learning_curves(rows, out, title)


def _table_name(table: ResultTable) -> str:
    return f"Table {table.number}" if table.number else "extra table"


def confusion_figures(table: ResultTable, folder: Path) -> list[tuple[str, Path, int]]:
    """Test confusion matrices of each row, summed over its finished runs:
    [(row label, PNG, runs summed)]."""
    out = []
    for row in table.rows:
        tests = [r.test for r in row.done if r.test and r.test.get("confusion_matrix")]
        if not tests:
            continue
        shapes = {np.asarray(t["confusion_matrix"]).shape for t in tests}
        if len(shapes) != 1:
            continue
        total = np.sum([np.asarray(t["confusion_matrix"]) for t in tests], axis=0)
        names = list(tests[0].get("class_names") or [str(i) for i in range(total.shape[0])])
        slug = row.backbone + (f"-{row.mode}" if row.mode else "")
        path = folder / f"confusion-{table.slug}-{slug}.png"
        confusion_matrix(total, names, path, f"{row.label} ({len(tests)} runs)")
        out.append((row.label, path, len(tests)))
    return out


@dataclass
class GradcamFigure:
    """A Grad-CAM grid of one backbone: rows = test images, columns = runs."""

    backbone: str
    path: Path
    columns: list[str]
    pointing: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> game summary
    images: int = 0


def _first(runs: list[RunRecord]) -> RunRecord | None:
    done = sorted((r for r in runs if r.status == DONE), key=lambda r: r.replicate)
    return done[0] if done else None


def gradcam_columns(
    exp: Experiment, tables: list[ResultTable]
) -> dict[str, list[tuple[str, RunRecord]]]:
    """For each backbone, the runs to compare (first seed/fold of each), like Figures 17-18:
    with several weight sources, the fine-tuned run of each source (ImageNet with the same ROI
    as the others); with ImageNet only, the runs of Tables 6-9."""
    by_backbone: dict[str, list[tuple[str, RunRecord]]] = {}
    sources = {r.source for r in exp.done()}
    for backbone in sorted({r.backbone for r in exp.done()}):
        columns: list[tuple[str, RunRecord]] = []
        if len(sources) > 1:
            others = [r for r in exp.done() if r.source != "imagenet" and r.backbone == backbone]
            roi = others[0].roi_applied if others else True
            for source in ("imagenet", "dataset_a", "dataset_b", *sorted(sources)):
                if any(label.startswith(SOURCE_TITLES.get(source, source)) for label, _ in columns):
                    continue
                mine = [r for r in exp.done() if r.backbone == backbone and r.source == source]
                if source == "imagenet":
                    mine = [r for r in mine if r.roi_applied == roi] or mine
                pick = _first([r for r in mine if r.mode == "finetune"]) or _first(mine)
                if pick is not None:
                    columns.append((SOURCE_TITLES.get(source, source), pick))
        else:
            for table in tables:
                for row in table.rows:
                    if row.backbone == backbone:
                        pick = _first(row.runs)
                        if pick is not None:
                            columns.append((_table_name(table), pick))
        if columns:
            by_backbone[backbone] = columns[:4]
    return by_backbone


def gradcam_figures(
    exp: Experiment,
    tables: list[ResultTable],
    folder: Path,
    *,
    images: int = 4,
    log: Callable[[str], None] = lambda message: None,
) -> list[GradcamFigure]:
    """Grad-CAM grids (`lumbar.explain.explain_run`) on a few test images of the dataset, with
    the lesion boxes when the dataset has a lesions.csv; a backbone that fails is logged and
    left out, never drawn from invented data."""

    out = []
    for backbone, columns in gradcam_columns(exp, tables).items():
        first = columns[0][1]
        entry = exp.datasets().get(str(first.spec.get("dataset", "")), {})
        # the run's own manifest: with folds, its test split differs from the dataset's
        manifest = (first.config or {}).get("manifest") or entry.get("manifest")
        if not manifest or not Path(manifest).is_file():
            log(f"Grad-CAM for {backbone}: dataset manifest not found")
            continue
        target = (first.config or {}).get("target") or first.spec.get("target")
        lesions, ingest = entry.get("lesions"), entry.get("ingest")
        try:
            if lesions and ingest and Path(lesions).is_file():
                found = items_from_manifest(
                    Path(manifest), split="test", target_name=target,
                    lesions=Path(lesions), ingest=Path(ingest),
                )  # fmt: skip
                # images with a lesion box first, for the pointing game
                found.sort(key=lambda item: item.box is None)
                items = _boxes_in_crop(found[:images], [r for _, r in columns])
            else:
                items = items_from_manifest(
                    Path(manifest), split="test", limit=images, target_name=target
                )
            target_dir = folder / f"gradcam-{backbone}"
            summary = explain_run(
                first.folder, items, target_dir, compare=[r.folder for _, r in columns[1:]]
            )
        except UserError as err:
            log(f"Grad-CAM for {backbone} skipped: {err}")
            continue
        labels = [label for label, _ in columns]
        grid = _grid(items, first, [r for _, r in columns], labels, target_dir)
        pointing = {}
        for label, (_, summary_run) in zip(labels, summary["runs"].items(), strict=True):
            if "pointing_game" in summary_run:
                pointing[label] = summary_run["pointing_game"]
        out.append(
            GradcamFigure(
                backbone,
                grid,
                [f"{label}: {r.id}" for label, r in columns],
                pointing,
                len(items),
            )
        )
    return out


def _grid(
    items: list[Any], first: RunRecord, runs: list[RunRecord], titles: list[str], folder: Path
) -> Path:
    """The overlays `explain_run` wrote, redrawn with short column titles (the run ids are in
    the caption): rows = images, columns = the image (first run's crop), then each run."""
    from PIL import Image

    crop = parse_roi((first.config or {}).get("roi", first.roi))
    rows = []
    for item in items[:12]:
        row = [np.ascontiguousarray(crop(read_uint8(item.path)))]
        for run in runs:
            with Image.open(folder / run.folder.resolve().name / f"{item.name}.png") as im:
                row.append(np.asarray(im.convert("RGB")))
        rows.append(row)
    return compare_grid(rows, ["image", *titles], [i.name for i in items[:12]], folder / "grid.png")


def _boxes_in_crop(items: list[Any], runs: list[RunRecord]) -> list[Any]:
    """Lesion boxes moved into the crop the runs' loader applies (the overlays show that crop);
    dropped when the runs crop differently, as one box cannot fit them all."""

    rois = {str((r.config or {}).get("roi", r.roi)) for r in runs}
    if len(rois) != 1:
        return [dataclasses.replace(item, box=None) for item in items]
    crop = parse_roi(rois.pop())
    out = []
    for item in items:
        if item.box is not None:
            height, width = read_uint8(item.path).shape[:2]
            left, top, _, _ = crop.box(width, height)
            x0, y0, x1, y1 = item.box
            item = dataclasses.replace(item, box=(x0 - left, y0 - top, x1 - left, y1 - top))
        out.append(item)
    return out
