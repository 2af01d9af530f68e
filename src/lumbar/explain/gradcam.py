"""Grad-CAM explanations (the paper's section 5, Figures 17-18) and their localisation check.

Grad-CAM (Selvaraju et al. 2017) weights each channel k of a convolutional feature map A by the
spatial mean of d score_c / d A_k and keeps the positive part of the weighted sum:

    cam_c = ReLU( sum_k alpha_k^c A_k ),   alpha_k^c = mean_ij d y_c / d A_k[i, j]

`GradCAM` computes it at a classifier's feature layer (the trunk's output, the usual target) or
its last convolution, or any named module. The trunks use in-place ReLUs, which would overwrite
a hooked activation before the backward pass; the hook therefore takes the activation as a
leaf of its own and hands the rest of the network a copy, so frozen trunks (no parameter needs
a gradient) work too.

`lumbar explain` draws overlays like Figures 17-18 (`overlay`, `compare_grid`) and, on phantom
data where the generator knows each lesion's box, measures the pointing game: the share of
lesions whose heat-map maximum falls inside the box, next to a random-point baseline (the
box's share of the image area).

Example:
    >>> cam = GradCAM(model)                       # a lumbar.models.Classifier
    >>> result = cam(images)                       # (N, C, H, W) normalised inputs
    >>> result.heatmaps.shape                      # (N, H, W), each in [0, 1]
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lumbar import runs
from lumbar.errors import UserError
from lumbar.visualize.overlays import compare_grid, draw_box, overlay

__all__ = [
    "CamResult",
    "GradCAM",
    "PointingResult",
    "pointing_game",
    "resolve_layer",
]

LAYER_ALIASES: tuple[str, ...] = ("features", "last_conv")


def resolve_layer(model: nn.Module, layer: str | nn.Module | None = None) -> nn.Module:
    """The module Grad-CAM hooks: "features" (default: the trunk's output), "last_conv", a
    module path inside the model (e.g. "backbone.features.17"), or a module itself.

    Raises:
        UserError: an unknown alias or module path.
    """
    if isinstance(layer, nn.Module):
        return layer
    name = layer or "features"
    if name == "features" and hasattr(model, "feature_layer"):
        return model.feature_layer  # type: ignore[no-any-return]
    if name == "last_conv" and hasattr(model, "last_conv"):
        return model.last_conv  # type: ignore[no-any-return]
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise UserError(
            f"unknown Grad-CAM layer {name!r}; use {', '.join(LAYER_ALIASES)} or a module path "
            "such as backbone.features.17"
        ) from None


@dataclass
class CamResult:
    """Grad-CAM of one batch.

    Attributes:
        heatmaps: (N, H, W) float32 in [0, 1] at the input size (each map divided by its max;
            an all-zero map stays zero).
        cams: (N, h, w) float32, unnormalised, at the feature map's size.
        logits: (N, num_classes) float32.
        probabilities: (N, num_classes) softmax of the logits.
        classes: (N,) the class each map explains.
    """

    heatmaps: np.ndarray
    cams: np.ndarray
    logits: np.ndarray
    probabilities: np.ndarray
    classes: np.ndarray


class GradCAM:
    """Grad-CAM of a classifier at one layer.

    Args:
        model: a `torch.nn.Module` mapping (N, C, H, W) to logits (N, num_classes); a
            `lumbar.models.Classifier` resolves the "features" / "last_conv" aliases.
        layer: see `resolve_layer`.

    The model is used in inference mode (BatchNorm statistics, no dropout); its parameters'
    `requires_grad` flags and its training mode are left as they were.
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None) -> None:
        self.model = model
        self.layer = resolve_layer(model, layer)

    def __call__(
        self, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None
    ) -> CamResult:
        """Grad-CAM of `images` for class `target`: one int, one per image (a negative entry
        means that image's predicted class), or None for each image's predicted class."""
        if images.ndim != 4:
            raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(images.shape)}")
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
            # A leaf of our own: later in-place ops (ReLU(inplace=True)) change only the copy.
            leaf = output.detach().requires_grad_(True)
            captured.append(leaf)
            return leaf.clone()

        was_training = self.model.training
        # Only the part after the hooked layer needs a graph: parameters are switched off so
        # the trunk's forward pass records nothing (faster, far less memory).
        flags = [(p, p.requires_grad) for p in self.model.parameters()]
        handle = self.layer.register_forward_hook(hook)
        try:
            for param, _ in flags:
                param.requires_grad_(False)
            self.model.eval()
            with torch.enable_grad():
                logits = self.model(images)
                if len(captured) != 1:
                    raise RuntimeError(
                        f"Grad-CAM layer ran {len(captured)} times in one forward pass; "
                        "choose a layer that runs once"
                    )
                activation = captured[0]
                n = logits.shape[0]
                predicted = logits.detach().argmax(dim=1)
                if target is None:
                    classes = predicted
                else:
                    classes = torch.as_tensor(target, dtype=torch.long).reshape(-1).expand(n)
                    if int(classes.max()) >= logits.shape[1]:
                        raise ValueError(
                            f"class {classes.tolist()} out of range for {logits.shape[1]} classes"
                        )
                    classes = torch.where(classes < 0, predicted, classes)
                score = logits.gather(1, classes.view(-1, 1)).sum()
                (grads,) = torch.autograd.grad(score, activation)
        finally:
            handle.remove()
            for param, flag in flags:
                param.requires_grad_(flag)
            self.model.train(was_training)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cams = torch.relu((weights * activation.detach()).sum(dim=1))
        heat = nn.functional.interpolate(
            cams[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
        peak = heat.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
        heat = (heat / peak).clamp_(0.0, 1.0)
        logits = logits.detach()
        return CamResult(
            heatmaps=heat.numpy().astype(np.float32),
            cams=cams.numpy().astype(np.float32),
            logits=logits.numpy().astype(np.float32),
            probabilities=torch.softmax(logits, dim=1).numpy().astype(np.float32),
            classes=classes.numpy().astype(np.int64),
        )


# ----------------------------------------------------------------------------- pointing game


@dataclass
class PointingResult:
    """The pointing game over lesions with a known box.

    Attributes:
        lesions: how many lesions were scored.
        hits: heat-map maxima inside their lesion's box.
        random_baseline: expected hit rate of a uniformly random point (mean box area share).
        per_image: one dict per lesion (image, level, hit, box share, peak).
    """

    lesions: int
    hits: int
    random_baseline: float
    per_image: list[dict[str, Any]]

    @property
    def hit_rate(self) -> float:
        """hits / lesions (0 when there is none)."""
        return self.hits / self.lesions if self.lesions else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "lesions": self.lesions,
            "hits": self.hits,
            "hit_rate": round(self.hit_rate, 4),
            "random_baseline": round(self.random_baseline, 4),
        }


def point_in_box(
    heatmap: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> tuple[bool, tuple[float, float]]:
    """Whether the heat map's maximum lies in `box`, given in the pixels of an image of `size`
    (width, height) that the heat map covers; also the peak in those pixels (x, y)."""
    height, width = heatmap.shape
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    x = (col + 0.5) * size[0] / width
    y = (row + 0.5) * size[1] / height
    x0, y0, x1, y1 = box
    return bool(x0 <= x <= x1 and y0 <= y <= y1), (x, y)


def box_share(box: tuple[float, float, float, float], size: tuple[int, int]) -> float:
    """The share of a (width, height) image that `box` covers after clipping: the hit chance
    of a uniformly random point."""
    x0, y0, x1, y1 = box
    w = max(0.0, min(x1, size[0]) - max(x0, 0.0))
    h = max(0.0, min(y1, size[1]) - max(y0, 0.0))
    return w * h / float(size[0] * size[1])


def pointing_game(
    heatmaps: Sequence[np.ndarray],
    boxes: Sequence[tuple[float, float, float, float]],
    sizes: Sequence[tuple[int, int]],
    names: Sequence[str] | None = None,
    tolerance: float = 0.0,
) -> PointingResult:
    """Score heat maps against lesion boxes (each in its image's pixels, image of `sizes`).

    Args:
        tolerance: grow each box by this many pixels on every side first (Zhang et al.'s
            pointing game uses 15 px); the random baseline uses the grown box too.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    per_image = []
    hits = 0
    shares = []
    for i, (heat, box, size) in enumerate(zip(heatmaps, boxes, sizes, strict=True)):
        t = tolerance
        box = (box[0] - t, box[1] - t, box[2] + t, box[3] + t)
        hit, peak = point_in_box(heat, box, size)
        share = box_share(box, size)
        hits += hit
        shares.append(share)
        per_image.append(
            {
                "image": names[i] if names else str(i),
                "hit": hit,
                "peak_x": round(peak[0], 1),
                "peak_y": round(peak[1], 1),
                "box": list(box),
                "box_share": round(share, 5),
            }
        )
    baseline = float(np.mean(shares)) if shares else 0.0
    return PointingResult(len(per_image), hits, baseline, per_image)


def write_json(path: Path, data: Any) -> None:
    """Atomically write `data` as indented JSON."""
    from lumbar.files import atomic_path

    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Atomically write dict rows as CSV with `columns`."""
    from lumbar.files import atomic_path

    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# ----------------------------------------------------------------------------- runs and images


def load_run(run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The trained classifier of a run folder and its config (see `lumbar.models.load_classifier`).

    Raises:
        UserError: not a run folder, or one written by an incompatible version (unknown
            backbone, missing keys, a checkpoint that does not fit).
    """
    from lumbar.models import load_classifier

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
    from lumbar.data.dataset import load_image
    from lumbar.data.imageio import read_uint8

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
    from PIL import Image

    from lumbar.data.roi import parse_roi

    runs = [Path(run_dir), *[Path(r) for r in compare]]
    names = _run_labels(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    grid_rows: list[list[np.ndarray]] = [[] for _ in items]
    summary: dict[str, Any] = {"runs": {}, "images": len(items)}
    for run, label in zip(runs, names, strict=True):
        model, config = load_run(run)
        crop = parse_roi(roi if roi is not None else config.get("roi", "none"))
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
    write_csv(out / "explanations.csv", rows, columns)
    if items:
        compare_grid(
            grid_rows[:12],
            ["image", *names],
            [item.name for item in items[:12]],
            out / "compare.png",
        )
    write_json(out / "summary.json", summary)
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
    from PIL import Image

    from lumbar.data.manifest import read_manifest
    from lumbar.data.roi import parse_roi
    from lumbar.data.targets import get_target
    from lumbar.grading import GradeField
    from lumbar.pseudonym import load_secret, pseudonymize

    manifest = read_manifest(Path(manifest_path))
    if split is not None and not manifest.has_column("split"):
        raise UserError(f"manifest {Path(manifest_path).name} has no split column")
    boxes: dict[tuple[str, str], tuple[float, float, float, float]] = {}
    if lesions is not None:
        if ingest is None:
            raise UserError("--lesions needs --ingest (the ingest folder, for its secret)")
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
            left, top, _, _ = parse_roi(row.get("roi") or "none").box(width, height)
            box = (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
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
