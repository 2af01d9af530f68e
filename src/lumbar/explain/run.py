"""`lumbar explain`: Grad-CAM overlays of a run's predictions on images or a manifest's split,
with the pointing game where lesion boxes are known; and loading a run's classifier with the
exact input preparation of training, which `lumbar.inference` uses too."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lumbar import runs
from lumbar.data.dataset import load_image
from lumbar.data.imageio import read_uint8
from lumbar.data.manifest import read_manifest
from lumbar.data.roi import PlacedDiscROI, image_roi, parse_roi
from lumbar.data.targets import get_target
from lumbar.errors import UserError
from lumbar.explain.gradcam import GradCAM
from lumbar.explain.pointing import point_in_box, pointing_game
from lumbar.files import prepare_output_dir, write_csv_atomic, write_json_atomic
from lumbar.grading import GradeField
from lumbar.models import load_classifier
from lumbar.pseudonym import load_secret, pseudonymize
from lumbar.visualize.overlays import compare_grid, draw_box, overlay

__all__ = [
    "ExplainItem",
    "class_names",
    "explain",
    "explain_run",
    "items_from_manifest",
    "items_from_paths",
    "load_run",
    "prepare_image",
    "to_input",
]


def load_run(run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The trained classifier of a run folder and its config (see `lumbar.models.load_classifier`).

    Raises:
        UserError: not a run folder, or one written by an incompatible version (unknown
            backbone, missing keys, a checkpoint that does not fit).
    """

    config = runs.read_config(run_dir)
    try:
        model = load_classifier(Path(run_dir))
    except UserError:
        raise
    except Exception as err:  # e.g. a pickle of another version: one line, not a traceback
        raise UserError(
            f"run {Path(run_dir).name} cannot be loaded by this version of lumbar "
            f"({type(err).__name__})"
        ) from None
    return model, config


def class_names(config: dict[str, Any]) -> list[str]:
    """The run's class names (config "class_names", else "class 0", "class 1", ...)."""
    names = config.get("class_names")
    n = int(config.get("num_classes", 2))
    if isinstance(names, list) and len(names) == n:
        return [str(v) for v in names]
    return [f"class {i}" for i in range(n)]


def to_input(pixels: np.ndarray, preprocessing: Any) -> torch.Tensor:
    """A cached-form image (C, H, W) uint8 from `lumbar.data.dataset.load_image` -> (1, C', H, W)
    float32 normalised as the weights expect (a 1-channel image is replicated to 3)."""
    scale, offset = preprocessing.affine()
    values = torch.from_numpy(np.ascontiguousarray(pixels)).float()[None]
    channels = preprocessing.num_channels
    if values.shape[1] != channels:
        values = values.expand(1, channels, *values.shape[2:])
    s = torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1)
    o = torch.tensor(offset, dtype=torch.float32).view(1, -1, 1, 1)
    return values * s + o


def prepare_image(path: Path, roi: Any, preprocessing: Any) -> tuple[np.ndarray, torch.Tensor]:
    """(display image: the ROI crop as uint8 (H, W[, 3]), network input (1, C, h, w)).

    The input is made by the training loader's own `load_image`, so an explanation sees exactly
    what the model saw in evaluation.
    """

    display = np.ascontiguousarray(roi(read_uint8(path)))
    return display, to_input(load_image(path, roi, preprocessing), preprocessing)


@dataclass
class ExplainItem:
    """One image to explain: its path, a display name, and optional lesion box / class."""

    path: Path
    name: str
    target: int | None = None
    box: tuple[float, float, float, float] | None = None  # in the displayed (cropped) pixels
    level: str = ""
    group: str = ""  # e.g. the disc state ("bulge", "herniation"): pointing game per group


def explain_run(
    run_dir: Path,
    items: Sequence[ExplainItem],
    out: Path,
    *,
    compare: Sequence[Path] = (),
    layer: str | None = None,
    target: int | None = None,
    roi: str | None = None,
    alpha: float = 0.45,
    tolerance: float = 0.0,
    progress: Any = None,
) -> dict[str, Any]:
    """Grad-CAM overlays of `items` under the run (and the `compare` runs), written to `out`.

    Writes `out/<run>/<image>.png` overlays, `out/explanations.csv` (run, image, class,
    probabilities, peak), `out/compare.png` (a grid, rows = images, columns = runs) and, when
    items carry lesion boxes, `out/pointing-game.json`.

    Args:
        target: class to explain for every image; None: the item's own target (a lesion's true
            class) or else the predicted class.
        roi: crop applied before the model (default: the run's own loader ROI).
        tolerance: pointing-game margin around each lesion box, in displayed pixels.

    Returns:
        The summary written to `out/summary.json`.
    """

    runs = [Path(run_dir), *[Path(r) for r in compare]]
    names = _run_labels(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    grid_rows: list[list[np.ndarray]] = [[] for _ in items]
    summary: dict[str, Any] = {"runs": {}, "images": len(items)}
    for run, label in zip(runs, names, strict=True):
        model, config = load_run(run)
        crop = image_roi(roi if roi is not None else config.get("roi", "none"), "explain")
        classes = class_names(config)
        cam = GradCAM(model, layer)
        (out / label).mkdir(exist_ok=True)
        heatmaps, boxes, sizes, shown, groups = [], [], [], [], []
        for i, item, display, result, k in _batched_cams(cam, items, crop, model, target):
            heat = result.heatmaps[k]
            picture = overlay(display, heat, alpha)
            if item.box is not None:  # the known lesion, to judge the map by eye
                picture = draw_box(picture, item.box)
            Image.fromarray(picture).save(out / label / f"{item.name}.png")
            if not grid_rows[i]:
                grid_rows[i].append(display)
            grid_rows[i].append(picture)
            size = (display.shape[1], display.shape[0])
            cls = int(result.classes[k])
            row = {
                "run": label,
                "image": item.name,
                "level": item.level,
                "explained_class": classes[cls],
                "predicted_class": classes[int(result.probabilities[k].argmax())],
                **{
                    f"p_{c}": round(float(p), 5)
                    for c, p in zip(classes, result.probabilities[k], strict=True)
                },
            }
            if item.box is not None:
                t = tolerance
                grown = (item.box[0] - t, item.box[1] - t, item.box[2] + t, item.box[3] + t)
                hit, peak = point_in_box(heat, grown, size)
                row.update(hit=int(hit), peak_x=round(peak[0], 1), peak_y=round(peak[1], 1))
                heatmaps.append(heat)
                boxes.append(item.box)
                sizes.append(size)
                shown.append(item.name)
                groups.append(item.group)
            rows.append(row)
            if progress is not None:
                progress(1)
        run_summary: dict[str, Any] = {
            "path": str(run),
            "backbone": config.get("backbone"),
            "layer": layer or "features",
        }
        if boxes:
            game = pointing_game(heatmaps, boxes, sizes, shown, tolerance)
            run_summary["pointing_game"] = {**game.to_dict(), "tolerance_px": tolerance}
            for group in sorted(set(groups) - {""}):
                chosen = [j for j, g in enumerate(groups) if g == group]
                part = pointing_game(
                    [heatmaps[j] for j in chosen],
                    [boxes[j] for j in chosen],
                    [sizes[j] for j in chosen],
                    tolerance=tolerance,
                )
                run_summary[f"pointing_game_{group}"] = part.to_dict()
        summary["runs"][label] = run_summary
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    write_csv_atomic(out / "explanations.csv", rows, columns)
    if items:
        compare_grid(
            grid_rows[:12],
            ["image", *names],
            [item.name for item in items[:12]],
            out / "compare.png",
        )
    write_json_atomic(out / "summary.json", summary)
    return summary


def _batched_cams(
    cam: GradCAM,
    items: Sequence[ExplainItem],
    crop: Any,
    model: Any,
    target: int | None,
    batch_size: int = 16,
) -> Any:
    """Yield (index, item, display image, batch result, position in batch), batch by batch."""
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        prepared = [prepare_image(item.path, crop, model.preprocessing) for item in chunk]
        wanted = [
            target if target is not None else (item.target if item.target is not None else -1)
            for item in chunk
        ]
        result = cam(torch.cat([x for _, x in prepared]), wanted)
        for k, (item, (display, _)) in enumerate(zip(chunk, prepared, strict=True)):
            yield start + k, item, display, result, k


def _run_labels(runs: Sequence[Path]) -> list[str]:
    """Distinct folder-safe labels for runs (their folder names, numbered when they clash)."""
    labels: list[str] = []
    for run in runs:
        base = Path(run).resolve().name or "run"
        label, n = base, 2
        while label in labels:
            label, n = f"{base}-{n}", n + 1
        labels.append(label)
    return labels


def items_from_paths(paths: Sequence[Path]) -> list[ExplainItem]:
    """Items for image files given on the command line (names made unique)."""
    items: list[ExplainItem] = []
    seen: set[str] = set()
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"image {Path(path).name} not found")
        name, n = Path(path).stem, 2
        while name in seen:
            name, n = f"{Path(path).stem}-{n}", n + 1
        seen.add(name)
        items.append(ExplainItem(Path(path), name))
    return items


def items_from_manifest(
    manifest_path: Path,
    *,
    split: str | None = None,
    view: str | None = "axial_t2",
    limit: int | None = None,
    target_name: str | None = None,
    lesions: Path | None = None,
    ingest: Path | None = None,
    lesions_only: bool = False,
) -> list[ExplainItem]:
    """Items for a manifest's rows (one split, one view), with lesion boxes for the pointing game.

    Lesion boxes (`lumbar synth`'s lesions.csv: original PatientID, level, box on the axial
    frame) are joined through the pseudonym secret of INGEST, and moved through the crop the
    manifest's `roi` column records (the crop of `lumbar roi`, on INGEST's full-size image).

    Args:
        target_name: training target whose class a lesion's map explains (its true class).
        lesions_only: keep only rows that have a lesion box.
    """

    manifest = read_manifest(Path(manifest_path))
    if split is not None and not manifest.has_column("split"):
        raise UserError(f"manifest {Path(manifest_path).name} has no split column")
    boxes: dict[tuple[str, str], tuple[float, float, float, float]] = {}
    if lesions is not None:
        if ingest is None:
            raise UserError(
                "lesion boxes need the ingest folder (for its pseudonym secret)", option="ingest"
            )
        secret = load_secret(Path(ingest))
        with open(lesions, newline="", encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                key = (pseudonymize(rec["patient_id"], secret), rec["level"])
                boxes[key] = tuple(float(rec[k]) for k in ("x0", "y0", "x1", "y1"))  # type: ignore[assignment]
    target = get_target(target_name) if target_name else None
    items: list[ExplainItem] = []
    for i, row in enumerate(manifest.rows):
        if split is not None and row.get("split") != split:
            continue
        if view is not None and manifest.has_column("view") and row.get("view") != view:
            continue
        patient, level = row.get("patient_id", ""), row.get("level", "")
        box = boxes.get((patient, level))
        if box is not None:
            stem = Path(row["image"]).stem.split("-", 1)[-1]
            original = Path(ingest) / patient / f"{stem}.png"  # type: ignore[arg-type]
            if not original.is_file():
                raise UserError(f"lesion image {patient}/{stem}.png not found in the ingest folder")
            with Image.open(original) as img:
                width, height = img.size
            try:
                crop = parse_roi(row.get("roi") or "none").for_row(row)
            except ValueError as err:
                raise manifest.error([i], str(err)) from None
            left, top, right, bottom = crop.box(width, height)
            # a disc ROI is resampled to a fixed size: scale the box with it
            sx = crop.roi.pixels / (right - left) if isinstance(crop, PlacedDiscROI) else 1.0
            sy = crop.roi.pixels / (bottom - top) if isinstance(crop, PlacedDiscROI) else 1.0
            box = (
                (box[0] - left) * sx,
                (box[1] - top) * sy,
                (box[2] - left) * sx,
                (box[3] - top) * sy,
            )
        if lesions_only and box is None:
            continue
        cls = None
        if target is not None and row.get(target.column, "") != "":
            cls = int(target.encode(np.array([int(row[target.column])]))[0])
        name = f"{patient}_{level}" if level else Path(row["image"]).stem
        state = row.get("disc_state", "")
        group = GradeField.DISC_STATE.scale(int(state)).name.lower() if state else ""
        items.append(ExplainItem(manifest.image_path(i), name, cls, box, level, group))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise UserError(f"no {view or ''} images selected from {Path(manifest_path).name}")
    return items


def explain(
    run_dir: Path,
    out: Path,
    *,
    images: Sequence[Path] = (),
    manifest: Path | None = None,
    split: str | None = "test",
    view: str | None = "axial_t2",
    limit: int | None = None,
    lesions: Path | None = None,
    ingest: Path | None = None,
    lesions_only: bool = False,
    force: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """`lumbar explain`: Grad-CAM of a run on image files, or on a manifest's images (one
    split and view; None or "all" for every one), written to `out` (see `explain_run`, which
    takes the `options`). The images' class to explain defaults to a lesion's true class.

    Raises:
        UserError: both or neither of images and a manifest; a non-empty `out` without
            `force`; a bad run folder, manifest or lesion file.
    """
    if (manifest is None) == (not images):
        raise UserError("give either a manifest or image files, not both", option="manifest")
    prepare_output_dir(out, force=force)
    config = runs.read_config(run_dir)
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
        items = items_from_paths(images)[:limit]
    summary = explain_run(run_dir, items, out, **options)
    summary["explained"] = len(items)
    return summary
