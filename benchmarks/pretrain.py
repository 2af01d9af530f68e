"""Same-domain pretraining (Procedures 2 and 3) against a randomly initialised network.

The paper's claim (Tables 11-14) is that a backbone pretrained on MRI transfers better than
ImageNet. This benchmark asks the question a step earlier, on data we can make: does a backbone
pretrained by `lumbar pretrain` give better *frozen* features for the phantom disc task than the
same backbone with random weights?

    (a) supervised  `pretrain_supervised` on a phantom brain-tumour source set
                    (`lumbar synth --kind source`, 4 classes grouped normal / abnormal)
    (b) ssl         `pretrain_unlabelled` (SimCLR) on a phantom unlabelled set
                    (`lumbar synth --kind unlabelled`: lumbar and brain slices, PNG + DICOM)
    (c) ssl-real    `pretrain_unlabelled` (SimCLR) on the real unlabelled lumbar MRI PNGs in
                    ../shared/data/lumbar-mri-unlabelled (skipped when absent)
    (d) scratch     the same backbone, randomly initialised (seed 0), with its BatchNorm
                    statistics computed on the unlabelled set as the pretrained runs' are
                    (`scratch-raw`: plain `--weights scratch`, torchvision's initial statistics)
    (e) reference   EfficientNet-Lite0 with its ImageNet weights (offline): what the same probe
                    finds in features known to be good, so a null result can be read

Each source is then used for a linear probe on the phantom target: `lumbar.train` in frozen
mode with a linear head (`hidden: 0`: pool -> dropout -> linear), no augmentation, on target
disc_abnormal with a centre crop (`center:0.5`), the same manifest and split for every source,
over --seeds seeds (head init, shuffling). Pretraining itself runs once per source (seed 0) to
fit the CPU budget, so the intervals cover the probe's variation, not the pretraining's.
Reported: test F1 per run, mean over seeds with a 95% t-interval, ROC AUC, and the improvement
rate over scratch (Eq. 8).

CPU budget (2 cores, no GPU): MobileNetV2 at 48 x 48 pixels, a few hundred images per set,
tens of epochs. Measured on the shared 2-core machine: the defaults took 11 minutes; the larger
run in pretrain.csv (--patients 60 --source-images 300 --unlabelled-images 300
--pretrain-epochs 40 --ssl-epochs 40 --seeds 5) 14 minutes, and the same with --ssl-epochs 120
(reusing its data, scratch and supervised runs) 31 minutes. The paper's lr 1e-5 for training
from scratch learns next to nothing in so few steps; supervised pretraining here uses 1e-3.
Steps whose output exists in --work are reused, so an interrupted run continues.

Usage:
    .venv/bin/python benchmarks/pretrain.py --work /tmp/pretrain-bench --csv benchmarks/pretrain.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from malloc_env import ensure_malloc_env

from lumbar.runs import CHECKPOINT, METRICS, read_metrics, write_config

REFERENCE = "imagenet-ref"
REAL_MRI = Path(__file__).resolve().parents[2] / "shared" / "data" / "lumbar-mri-unlabelled"


def _t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval of a few values (Student's t, n - 1 degrees of freedom)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _step(name: str, done: Path, fn) -> float:  # type: ignore[no-untyped-def]
    """Run `fn` unless `done` exists (so an interrupted benchmark resumes); seconds taken."""
    if done.exists():
        print(f"[{name}] reusing {done}", flush=True)
        return 0.0
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"[{name}] {seconds:.0f} s", flush=True)
    return seconds


def build_target(work: Path, patients: int) -> Path:
    """Phantom lumbar cohort -> ingest -> manifest with a patient-level split (60/15/25)."""
    from lumbar.data.build import build_dataset
    from lumbar.ingest import IngestOptions, ingest
    from lumbar.synth import synthesize_cohort

    manifest = work / "target" / "ds" / "manifest.csv"

    def make() -> None:
        root = work / "target"
        synthesize_cohort(root / "studies", patients=patients, seed=21, workers=2, progress=False)
        ingest(root / "studies", root / "ingest", IngestOptions(workers=2))
        build_dataset(
            root / "ingest", str(root / "studies" / "labels.csv"), root / "ds",
            ratios=(0.6, 0.15, 0.25), seed=0,
        )  # fmt: skip

    _step("target", manifest, make)
    return manifest


def random_trunk_run(out: Path, images: Path, backbone: str, size: int) -> None:
    """A run folder holding a randomly initialised trunk (seed 0, as the pretraining runs start)
    whose BatchNorm statistics are computed on the unlabelled set's images, as the pretraining
    runs' are: the fair "scratch" baseline. (Plain `--weights scratch` keeps torchvision's
    initial statistics, mean 0 / variance 1, on which the frozen features collapse.)"""
    import torch

    from lumbar.models import create_backbone, resolve_weights_at
    from lumbar.pretrain.common import recalibrate_batchnorm, save_trunk
    from lumbar.pretrain.dataset import ImageFileDataset, plain_batches
    from lumbar.pretrain.files import scan_images

    source = resolve_weights_at(backbone, "scratch", size)
    torch.manual_seed(0)
    trunk = create_backbone(backbone, source, num_classes=0)
    files = scan_images([images], max_images=1024)
    data = ImageFileDataset(files.paths, source.preprocessing)
    batches = plain_batches(data, range(len(files)), 32, 2, torch.device("cpu"))
    count = recalibrate_batchnorm(trunk.forward_features, trunk, batches)
    out.mkdir(parents=True, exist_ok=True)
    save_trunk(out, trunk, bn_recalibrated=count)
    write_config(out, {
        "backbone": backbone, "preprocessing": source.preprocessing.to_dict(),
        "weights": source.to_config(),
        "pretrain": {"kind": "none", "method": "random init + BatchNorm statistics",
                     "images": count},
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for data and runs")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=48, help="input side in pixels")
    parser.add_argument("--patients", type=int, default=40, help="phantom target patients")
    parser.add_argument("--source-images", type=int, default=200)
    parser.add_argument("--unlabelled-images", type=int, default=200)
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--ssl-epochs", type=int, default=15)
    parser.add_argument("--probe-epochs", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--roi", default="center:0.5", help="ROI of the probe (none, grid, center:F)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="pretraining batch")
    parser.add_argument("--probe-lr", type=float, default=3e-3)
    parser.add_argument(
        "--reference", default="efficientnet_lite0",
        help="also probe this backbone's ImageNet weights (offline for efficientnet_lite0), "
        "to show what the probe finds in good features; '' to skip",
    )  # fmt: skip
    parser.add_argument("--csv", type=Path, default=None, help="append results to this CSV")
    args = parser.parse_args()
    ensure_malloc_env()

    import torch

    from lumbar.metrics import improvement_rate
    from lumbar.pretrain import (
        SSLPretrainConfig,
        SupervisedPretrainConfig,
        pretrain_supervised,
        pretrain_unlabelled,
    )
    from lumbar.synth.sets import synthesize_source_set, synthesize_unlabelled_set
    from lumbar.train import TrainConfig, train

    torch.set_num_threads(2)
    started = time.perf_counter()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    manifest = build_target(work, args.patients)
    source_dir, unlabelled_dir = work / "source", work / "unlabelled"
    _step(
        "source set",
        source_dir,
        lambda: synthesize_source_set(source_dir, images=args.source_images, seed=1),
    )
    _step("unlabelled set", unlabelled_dir, lambda: synthesize_unlabelled_set(
        unlabelled_dir, images=args.unlabelled_images, seed=2))  # fmt: skip

    common = dict(backbone=args.backbone, input_size=args.size, workers=2, threads=2,
                  batch_size=args.batch_size,
                  device="cpu", seed=0)  # fmt: skip
    seconds: dict[str, float] = {}
    scratch = work / "pretrain" / "scratch"
    seconds["scratch"] = _step("scratch + BatchNorm statistics", scratch / CHECKPOINT,
        lambda: random_trunk_run(scratch, unlabelled_dir, args.backbone, args.size))  # fmt: skip
    runs: dict[str, str] = {"scratch": str(scratch), "scratch-raw": "scratch"}
    sup = work / "pretrain" / "supervised"
    seconds["supervised"] = _step("pretrain supervised", sup / METRICS, lambda: (
        pretrain_supervised(SupervisedPretrainConfig(
            data=[str(source_dir)], epochs=args.pretrain_epochs, lr=1e-3,
            **common), sup, progress=False, log=print)))  # fmt: skip
    runs["supervised"] = str(sup)
    ssl = work / "pretrain" / "ssl"
    seconds["ssl"] = _step("pretrain ssl", ssl / METRICS, lambda: pretrain_unlabelled(
        SSLPretrainConfig(data=[str(unlabelled_dir)], epochs=args.ssl_epochs,
                          **common), ssl, progress=False, log=print))  # fmt: skip
    runs["ssl"] = str(ssl)
    if REAL_MRI.is_dir():
        real = work / "pretrain" / "ssl-real"
        seconds["ssl-real"] = _step("pretrain ssl-real", real / METRICS,
            lambda: pretrain_unlabelled(SSLPretrainConfig(
                data=[str(REAL_MRI)], epochs=args.ssl_epochs, **common),
                real, progress=False, log=print))  # fmt: skip
        runs["ssl-real"] = str(real)
    else:
        print(f"skipping ssl-real: {REAL_MRI} is absent")

    backbones = dict.fromkeys(runs, args.backbone)
    if args.reference:  # a calibration of the probe: features known to be good
        runs[REFERENCE] = "imagenet"
        backbones[REFERENCE] = args.reference
    results: dict[str, list[float]] = {}
    aucs: dict[str, list[float]] = {}
    test_images = 0
    for name, weights in runs.items():
        results[name] = []
        aucs[name] = []
        for seed in range(args.seeds):
            out = work / "probe" / f"{name}-s{seed}"
            config = TrainConfig(
                manifest=str(manifest), target="disc_abnormal", backbone=backbones[name],
                weights=weights, mode="frozen", hidden=0, epochs=args.probe_epochs,
                batch_size=32, lr=args.probe_lr, input_size=args.size, roi=args.roi, seed=seed,
                augmentation="none",
                threads=2, device="cpu",
            )  # fmt: skip
            _step(f"probe {name} seed {seed}", out / METRICS,
                  lambda config=config, out=out: train(config, out, progress=False))  # fmt: skip
            test = (read_metrics(out) or {})["test"]
            results[name].append(float(test["f1"]))
            aucs[name].append(float(test["roc_auc"]) if test["roc_auc"] is not None else math.nan)
            test_images = int(test["n"])

    base, _, base_high = _t_interval(results["scratch"])
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    rows = []
    print(f"\nlinear probe on phantom disc_abnormal ({args.backbone}, {args.size} px, "
          f"{args.seeds} seeds): test F1 mean [95% CI]")  # fmt: skip
    for name, values in results.items():
        mean, low, high = _t_interval(values)
        baseline = name.startswith("scratch") or name == REFERENCE
        rate = None if baseline else improvement_rate(base, mean)
        beats = (
            ""
            if baseline
            else ("  beats scratch" if low > base_high else "  not clearly better than scratch")
        )
        rate_text = "" if rate is None else f"  Eq. 8 vs scratch {rate:+.1f}%"
        rate_text += f"  (ROC AUC {_t_interval(aucs[name])[0]:.3f})"
        print(f"  {name:10s} {mean:.3f} [{low:.3f}, {high:.3f}]  runs "
              f"{', '.join(f'{v:.3f}' for v in values)}{rate_text}{beats}")  # fmt: skip
        rows.append({
            "date_utc": stamp, "machine": platform.machine(), "cpus": os.cpu_count(),
            "backbone": backbones[name], "input": args.size, "source": name,
            "target_patients": args.patients, "test_images": test_images,
            "roi": args.roi, "pretrain_images": _images(runs[name]),
            "pretrain_epochs": {"supervised": args.pretrain_epochs, "ssl": args.ssl_epochs,
                                "ssl-real": args.ssl_epochs}.get(name, ""),
            "pretrain_kept_epoch": _epochs(runs[name]),
            "pretrain_s": _seconds(runs[name]),
            "probe": f"frozen linear, {args.probe_epochs} epochs",
            "seeds": args.seeds, "f1_mean": round(mean, 4), "f1_ci_low": round(low, 4),
            "f1_ci_high": round(high, 4), "f1_runs": " ".join(f"{v:.4f}" for v in values),
            "improvement_vs_scratch_pct": "" if rate is None else round(rate, 1),
            "auc_mean": round(_t_interval(aucs[name])[0], 4),
            "auc_runs": " ".join(f"{v:.4f}" for v in aucs[name]),
        })  # fmt: skip
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.csv is not None:
        new = not args.csv.exists()
        with open(args.csv, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(rows)


def _metric(weights: str, key: str) -> Any:
    """`key` of a pretraining run's metrics.json ("" for a folder without one)."""
    metrics = read_metrics(Path(weights)) if Path(weights).is_dir() else None
    return "" if metrics is None else metrics[key]


def _images(weights: str) -> int | str:
    value = _metric(weights, "images")
    return value if value == "" else int(value)


def _seconds(weights: str) -> float | str:
    value = _metric(weights, "seconds")
    return value if value == "" else round(float(value), 1)


def _epochs(weights: str) -> int | str:
    value = _metric(weights, "best_epoch")
    return value if value == "" else int(value)


if __name__ == "__main__":
    main()
