"""`lumbar evaluate` and `lumbar compare`: a run's test metrics with confidence intervals.

`evaluate_run` rebuilds a run's classifier (`lumbar.models.load_classifier`), predicts one split
of its manifest (or of another manifest with the same target column), and returns accuracy,
precision, recall, F1 (Eq. 4-7; positive class = abnormal for binary targets, macro and per
class otherwise), ROC AUC and 95% bootstrap confidence intervals resampled by patient. It writes
`predictions-<tag>.csv`, `evaluation-<tag>.json` and `confusion-<tag>.png` into the run
(`lumbar.runs`).

`compare_runs` scores two runs on the same images: Eq. 8 improvement rates and a paired
patient-level bootstrap p-value per metric.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from lumbar import runs
from lumbar.data.dataset import ManifestDataset, make_loader
from lumbar.data.manifest import read_manifest
from lumbar.data.targets import get_target
from lumbar.errors import UserError
from lumbar.files import write_csv_atomic, write_json_atomic
from lumbar.metrics import (
    METRICS,
    bootstrap_ci,
    classification_metrics,
    improvement_rate,
    paired_bootstrap,
)
from lumbar.models import load_classifier
from lumbar.visualize.charts import confusion_matrix

__all__ = ["compare_runs", "evaluate_run", "predict_split", "run_label"]


def _run_config(run_dir: Path) -> dict[str, Any]:
    return runs.read_config(run_dir, require=("target", "manifest"), kind="training run")


def predict_split(
    run_dir: Path, *, split: str = "test", manifest: Path | None = None, batch_size: int = 64
) -> dict[str, Any]:
    """Class probabilities of a run's model on one split.

    Returns:
        {"images": [str], "patients": [str], "labels": (N,) int, "probabilities": (N, C),
        "class_names": [str], "manifest": str}.

    Raises:
        UserError: not a run, no such split, or no labelled image in it.
    """
    import torch

    config = _run_config(run_dir)
    source = Path(manifest) if manifest is not None else Path(config["manifest"])
    if not source.is_file():
        raise UserError(
            f"manifest {source.name} of run {Path(run_dir).name} is missing; give its new place",
            option="manifest",
        )
    data = read_manifest(source)
    column = config["target"]

    target = get_target(column)
    if not data.has_column(target.column):
        raise UserError(f"{source.name} has no {target.column} column for target {target.name}")
    if split not in ("train", "val", "test"):
        raise UserError(f"split must be train, val or test, got {split!r}", option="split")
    model = load_classifier(Path(run_dir))
    dataset = ManifestDataset(
        data,
        model.preprocessing,
        target=target.name,
        split=split,
        roi=config.get("roi", "none"),
        cache="none",
    )
    probs = []
    with torch.no_grad():
        for images, _ in make_loader(dataset, batch_size=batch_size):
            probs.append(torch.softmax(model(images), dim=1).numpy())
    return {
        "images": [str(p) for p in dataset.manifest.column("image")],
        "patients": dataset.manifest.patients(),
        "labels": dataset.labels.copy(),
        "probabilities": np.concatenate(probs).astype(np.float64),
        "class_names": list(config.get("class_names", target.class_names)),
        "manifest": str(source.resolve()),
    }


def _tag(split: str, manifest: Path | None) -> str:
    if manifest is None:
        return split
    digest = hashlib.sha256(str(Path(manifest).resolve()).encode()).hexdigest()[:8]
    return f"{split}-{digest}"


def _write_predictions(path: Path, pred: dict[str, Any]) -> None:
    probabilities = [f"p_{n}" for n in pred["class_names"]]
    columns = ["image", "patient_id", "label", "predicted", *probabilities]
    rows = []
    for image, patient, label, prob in zip(
        pred["images"], pred["patients"], pred["labels"], pred["probabilities"], strict=True
    ):
        values = [image, patient, int(label), int(prob.argmax()), *(f"{p:.6f}" for p in prob)]
        rows.append(dict(zip(columns, values, strict=True)))
    write_csv_atomic(path, rows, columns)


def evaluate_run(
    run_dir: Path,
    *,
    split: str = "test",
    manifest: Path | None = None,
    resamples: int = 1000,
    seed: int = 0,
    figures: bool = True,
) -> dict[str, Any]:
    """Metrics of a run on a split, with 95% patient-bootstrap CIs; writes them into the run.

    Returns:
        {"accuracy", "precision", "recall", "f1", "roc_auc", "ci": {metric: [low, high]},
        "average", "per_class", "confusion_matrix", "n", "patients", "split", "class_names"}.
    """
    run_dir = Path(run_dir)
    pred = predict_split(run_dir, split=split, manifest=manifest)
    metrics = classification_metrics(pred["labels"], pred["probabilities"], pred["class_names"])
    ci = bootstrap_ci(
        pred["labels"], pred["probabilities"], pred["patients"], resamples=resamples, seed=seed
    )
    result = {
        **{k: metrics[k] for k in METRICS},
        "ci": {k: (None if v is None else [v[0], v[1]]) for k, v in ci.items()},
        "average": metrics["average"],
        "per_class": metrics["per_class"],
        "confusion_matrix": metrics["confusion_matrix"],
        "n": metrics["n"],
        "patients": len(set(pred["patients"])),
        "split": split,
        "class_names": pred["class_names"],
        "manifest": pred["manifest"],
    }
    tag = _tag(split, manifest)
    _write_predictions(runs.predictions_path(run_dir, tag), pred)
    write_json_atomic(runs.evaluation_path(run_dir, tag), result)
    if figures:
        confusion_matrix(
            np.asarray(metrics["confusion_matrix"]),
            pred["class_names"],
            runs.confusion_path(run_dir, tag),
            f"{run_dir.name}: {split} ({metrics['n']} images)",
        )
    return result


def _read_predictions(run_dir: Path, split: str) -> dict[str, Any]:
    path = runs.predictions_path(run_dir, split)
    if not path.is_file():
        evaluate_run(run_dir, split=split, figures=False)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    prob_cols = [c for c in rows[0] if c.startswith("p_")] if rows else []
    return {
        "images": [r["image"] for r in rows],
        "patients": [r["patient_id"] for r in rows],
        "labels": np.array([int(r["label"]) for r in rows], dtype=np.int64),
        "probabilities": np.array([[float(r[c]) for c in prob_cols] for r in rows]),
    }


def compare_runs(
    run_a: Path, run_b: Path, *, split: str = "test", resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Eq. 8 improvement rates of run B over run A and paired bootstrap p-values.

    Both runs must have predictions on the same images (the same manifest and split).

    Returns:
        {"a": metrics, "b": metrics, "improvement": {metric: %}, "paired": {metric: {...}},
        "n": images, "patients": count}.

    Raises:
        UserError: the runs were scored on different images or different targets.
    """
    a = _read_predictions(run_a, split)
    b = _read_predictions(run_b, split)
    if sorted(a["images"]) != sorted(b["images"]):
        raise UserError(
            f"runs {Path(run_a).name} and {Path(run_b).name} were evaluated on different "
            f"{split} images; compare runs trained on the same manifest"
        )
    if a["probabilities"].shape[1] != b["probabilities"].shape[1]:
        raise UserError("the two runs have different numbers of classes (different targets)")
    order = {image: i for i, image in enumerate(b["images"])}
    take = np.array([order[image] for image in a["images"]], dtype=np.int64)
    if not np.array_equal(a["labels"], b["labels"][take]):
        raise UserError("the two runs' labels differ for the same images (different targets?)")
    probs_b = b["probabilities"][take]
    metrics_a = classification_metrics(a["labels"], a["probabilities"])
    metrics_b = classification_metrics(a["labels"], probs_b)
    paired = paired_bootstrap(
        a["labels"], a["probabilities"], probs_b, a["patients"], resamples=resamples, seed=seed
    )
    improvement = {}
    for key in METRICS:
        old, new = metrics_a[key], metrics_b[key]
        improvement[key] = None if old is None or new is None else improvement_rate(old, new)
    return {
        "a": {k: metrics_a[k] for k in METRICS},
        "b": {k: metrics_b[k] for k in METRICS},
        "improvement": improvement,
        "paired": paired,
        "n": len(a["labels"]),
        "patients": len(set(a["patients"])),
    }


def run_label(run_dir: Path) -> tuple[str, str, str]:
    """(backbone, weights, mode) of a run, for tables like the paper's Tables 6-9."""
    config = _run_config(run_dir)
    train = config.get("train", {})
    mode = train.get("mode", "?")
    if mode == "finetune":
        mode = f"fine-tuned, last {train.get('unfreeze')} {train.get('unfreeze_unit')}"
    weights = str(train.get("weights", "?"))
    weights = weights if weights in ("imagenet", "scratch") else Path(weights).name
    return config.get("backbone", "?"), weights, mode
