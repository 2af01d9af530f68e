"""The full Procedure 1 grid on 2 cores: naive cost beside what `lumbar experiment` costs.

The grid: VGG16, VGG19, ResNet50, MobileNetV2 x frozen / fine-tuned x ROI none / grid = 16
runs, 181 phantom patients (905 axial images, split 75/15/10), 50 epochs, 224 px, batch 64,
4 augmentation variants, fine-tuning the last two convolutions (the paper's "two" layers).
Weights are `scratch`: the same arithmetic as ImageNet weights, which are not downloaded here.

Naive cost of a run: every epoch a forward and backward pass of the whole network over the
training images, plus a forward pass over the validation images.

Experiment cost: what `lumbar experiment` does. The frozen run of a (backbone, ROI) pair fills
the feature cache: the trunk up to the fine-tuned layers once per image and variant (stored
for its fine-tuned twin), then the last stages and the pooling on the stored tensor; each of
its epochs trains the head only. The fine-tuned twin reads that cache and each epoch trains
the last two convolutions and the head. Checkpoint and last.pt writes are counted too.

Default mode: every distinct piece is measured for real on a sample of the images (each
prefix fill per backbone and ROI, a few steps of each tail, the naive step), then
extrapolated to the grid's image counts and 50 epochs: figures labelled "extrapolated".
The script re-runs itself with the Makefile's MALLOC_* settings when they are not set.
--full runs the whole grid through `lumbar experiment` and reports the measured wall time.

Usage:
    .venv/bin/python benchmarks/experiment.py                 # measure pieces, extrapolate
    .venv/bin/python benchmarks/experiment.py --full          # the real grid (63.6 min here)
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from malloc_env import ensure_malloc_env

HERE = Path(__file__).resolve().parent
BACKBONES = ("vgg16", "vgg19", "resnet50", "mobilenet_v2")
ROIS = ("none", "grid")
EPOCHS, VARIANTS, BATCH, UNFREEZE = 50, 4, 64, 2


def _train_bench():  # type: ignore[no-untyped-def]
    """benchmarks/train.py as a module (its `_per_image` timing helper)."""
    spec = importlib.util.spec_from_file_location("bench_train", HERE / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grid_config(manifest: Path, epochs: int = EPOCHS) -> str:
    """The experiment YAML of the benchmark's grid (for --full)."""
    return f"""name: procedure-1-benchmark
seeds: [0]
train: {{epochs: {epochs}, batch_size: {BATCH}, aug_variants: {VARIANTS},
        unfreeze: {UNFREEZE}, unfreeze_unit: layer}}
datasets:
  main: {{manifest: {manifest}}}
procedures:
  - procedure: 1
    backbones: [{", ".join(BACKBONES)}]
    sources: [scratch]
    modes: [frozen, finetune]
    rois: [{", ".join(ROIS)}]
    train: {{epochs: {epochs}, lr: 0.001}}
"""


def build_phantom(folder: Path, patients: int) -> Path:
    """synth -> ingest -> dataset build, as scripts/demo.sh does; reused when present."""
    manifest = folder / "dataset" / "manifest.csv"
    if manifest.is_file():
        return manifest
    os.environ.setdefault("LUMBAR_PSEUDONYM_SECRET", "lumbar-benchmark-phantom-only")
    from lumbar.data.build import build_dataset
    from lumbar.ingest import IngestOptions, ingest
    from lumbar.synth import synthesize_cohort

    synthesize_cohort(folder / "studies", patients=patients, seed=7, force=True, progress=False)
    ingest(folder / "studies", folder / "ingest", IngestOptions())
    build_dataset(folder / "ingest", str(folder / "studies" / "labels.csv"), folder / "dataset",
                  force=True)  # fmt: skip
    return manifest


def measure_backbone(backbone: str, manifest: Path, sample: int, repeats: int) -> dict:
    """Seconds per image of each piece for `backbone` (and each ROI's prefix fill)."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    from lumbar.data.augment import Augmentation
    from lumbar.data.dataset import ManifestDataset
    from lumbar.models import build_classifier, freeze_backbone, unfreeze_last
    from lumbar.train import compute_prefix, extend_prefix

    per_image = _train_bench()._per_image
    torch.manual_seed(0)
    model = build_classifier(backbone, 2, "scratch").to(memory_format=torch.channels_last)
    unfreeze_last(model, UNFREEZE, unit="layer")
    stop_ft = model.num_frozen_stages()
    n_stages = len(model.stages())
    out: dict = {"backbone": backbone, "stop_ft": stop_ft, "stages": n_stages}
    pool = model.head.pool
    kw = {"batch_size": 32, "channels_last": True, "precision": "auto"}
    base = None
    for roi in ROIS:
        best = float("inf")
        for _ in range(repeats):
            # a fresh, uncached dataset each time: every image is decoded again, as in a run
            fresh = ManifestDataset(manifest, model.preprocessing, target="disc_abnormal",
                                    split="train", roi=roi, augmentation=Augmentation.paper(),
                                    cache="none")  # fmt: skip
            fresh.paths = fresh.paths[:sample]
            fresh.labels = fresh.labels[:sample]
            t0 = time.perf_counter()
            base = compute_prefix(model, fresh, stop_ft, variants=1, **kw)
            best = min(best, time.perf_counter() - t0)
        out[f"fill_{roi}"] = best / len(fresh.paths)
    assert base is not None
    freeze_backbone(model)
    t0 = time.perf_counter()
    pooled = extend_prefix(model, base, stop_ft, n_stages, pool=pool, **kw)
    out["extend"] = (time.perf_counter() - t0) / base.shape[1]

    labels = torch.from_numpy(np.resize(np.array([0, 1]), base.shape[1]))

    def stepper(start: int):  # type: ignore[no-untyped-def]
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=1e-3)

        def step(x: torch.Tensor) -> None:
            model.train()
            loss = F.cross_entropy(model.forward_tail(x, start), labels[: len(x)])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return step

    def infer(start: int):  # type: ignore[no-untyped-def]
        def run(x: torch.Tensor) -> None:
            model.eval()
            with torch.no_grad():
                model.forward_tail(x, start)

        return run

    chunks = lambda t: [t[0, i : i + BATCH] for i in range(0, t.shape[1], BATCH)]  # noqa: E731
    # frozen: the head on pooled features
    out["tail_frozen"] = per_image(stepper(n_stages), chunks(pooled), repeats)
    out["tail_frozen_val"] = per_image(infer(n_stages), chunks(pooled), repeats)
    # fine-tuned: the last two convolutions + head on the cached prefix
    unfreeze_last(model, UNFREEZE, unit="layer")
    cl = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731
    ft_batches = [cl(x) for x in chunks(base)]
    out["tail_ft"] = per_image(stepper(stop_ft), ft_batches, repeats)
    out["tail_ft_val"] = per_image(infer(stop_ft), ft_batches, repeats)
    # naive: the whole network, every parameter trained, on raw images
    for p in model.parameters():
        p.requires_grad_(True)
    data = ManifestDataset(manifest, model.preprocessing, target="disc_abnormal",
                           split="train", augmentation=Augmentation.paper())  # fmt: skip
    naive_n = 16
    images = [cl(data.__getitems__([(0, i) for i in range(s, s + 8)]).images)
              for s in range(0, naive_n, 8)]  # fmt: skip
    out["naive_step"] = per_image(stepper(0), images, 1)
    out["naive_val"] = per_image(infer(0), images, 1)
    # checkpoint + last.pt writes per epoch (the run folder's files)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        torch.save({"model": model.state_dict()}, Path(tmp) / "c.pt")
        out["save"] = time.perf_counter() - t0
    return out


def extrapolate(m: dict, n_train: int, n_val: int, epochs: int = EPOCHS) -> list[dict]:
    """Per-run naive and experiment seconds of one backbone's four runs."""
    rows = []
    naive = epochs * (n_train * m["naive_step"] + n_val * m["naive_val"])
    for roi in ROIS:
        fill = (VARIANTS * n_train + n_val) * (m[f"fill_{roi}"] + m["extend"])
        # last.pt every epoch, checkpoint.pt when the validation loss improves (say half)
        saves = epochs * 1.5 * m["save"]
        frozen = fill + epochs * (n_train * m["tail_frozen"] + n_val * m["tail_frozen_val"])
        finetune = epochs * (n_train * m["tail_ft"] + n_val * m["tail_ft_val"])
        for mode, seconds in (("frozen", frozen + saves), ("finetune", finetune + saves)):
            rows.append({"backbone": m["backbone"], "roi": roi, "mode": mode,
                         "naive_s": naive, "experiment_s": seconds,
                         "fill_s": fill if mode == "frozen" else 0.0})  # fmt: skip
    return rows


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:8.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "lumbar-bench-exp"
    )
    parser.add_argument("--patients", type=int, default=181)
    parser.add_argument("--sample", type=int, default=64, help="images per measured piece")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="run the whole grid for real")
    parser.add_argument("--csv", type=Path, default=HERE / "experiment.csv")
    args = parser.parse_args()
    ensure_malloc_env()

    import torch

    torch.set_num_threads(args.threads)
    from lumbar.data.manifest import read_manifest

    t0 = time.perf_counter()
    manifest = build_phantom(args.data, args.patients)
    m = read_manifest(manifest)
    labelled = [s for s, g in zip(m.column("split"), m.column("disc_state"), strict=True) if g]
    n_train, n_val = labelled.count("train"), labelled.count("val")
    print(f"phantom data: {len(labelled)} labelled images, {n_train} train / {n_val} val "
          f"({time.perf_counter() - t0:.0f} s to build or reuse)")  # fmt: skip

    rows = []
    for backbone in BACKBONES:
        t0 = time.perf_counter()
        pieces = measure_backbone(backbone, manifest, args.sample, args.repeats)
        ms = {k: round(v * 1000, 2) for k, v in pieces.items() if isinstance(v, float)}
        print(f"{backbone}: measured in {time.perf_counter() - t0:.0f} s, ms/image {ms}")
        rows += extrapolate(pieces, n_train, n_val)

    print(
        f"\n{'run (extrapolated to 50 epochs)':<40} {'naive':>12} {'experiment':>12} {'ratio':>7}"
    )
    for r in rows:
        name = f"p1-{r['backbone']}-{r['mode']}-{'roi' if r['roi'] == 'grid' else 'noroi'}"
        print(f"{name:<40} {_minutes(r['naive_s'])} {_minutes(r['experiment_s'])} "
              f"{r['naive_s'] / r['experiment_s']:6.0f}x")  # fmt: skip
    naive = sum(r["naive_s"] for r in rows)
    total = sum(r["experiment_s"] for r in rows)
    print(f"{'whole grid, 16 runs (extrapolated)':<40} {_minutes(naive)} {_minutes(total)} "
          f"{naive / total:6.0f}x")  # fmt: skip
    print(
        f"target: under 120 min on 2 cores -> {'met' if total < 7200 else 'NOT met'}; "
        f"at least 20x below naive -> {'met' if naive / total >= 20 else 'NOT met'}"
    )

    measured_total = ""
    if args.full:
        from lumbar.experiment import run_experiment

        config = args.data / "procedure-1.yaml"
        config.write_text(grid_config(manifest.resolve()), encoding="utf-8")
        t0 = time.perf_counter()
        result = run_experiment(config, args.data / "experiment", workers=1, report=False)
        measured_total = f"{(time.perf_counter() - t0) / 60:.1f}"
        print(
            f"measured: the whole grid through lumbar experiment in {measured_total} min "
            f"({len(result.failed)} failed)"
        )

    new = not args.csv.exists()
    with open(args.csv, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["date_utc", "machine", "cpus", "load1", "n_train", "n_val",
                             "epochs", "variants", "unfreeze_layers", "run", "naive_min",
                             "experiment_min", "speedup", "kind"])  # fmt: skip
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
        common = [stamp, platform.machine(), os.cpu_count(), round(os.getloadavg()[0], 2),
                  n_train, n_val, EPOCHS, VARIANTS, UNFREEZE]  # fmt: skip
        for r in rows:
            name = f"p1-{r['backbone']}-{r['mode']}-{'roi' if r['roi'] == 'grid' else 'noroi'}"
            ratio = round(r["naive_s"] / r["experiment_s"], 1)
            writer.writerow([*common, name, round(r["naive_s"] / 60, 2),
                             round(r["experiment_s"] / 60, 2), ratio, "extrapolated"])  # fmt: skip
        writer.writerow([*common, "grid-16-runs", round(naive / 60, 1), round(total / 60, 1),
                         round(naive / total, 1), "extrapolated"])  # fmt: skip
        if measured_total:
            writer.writerow([*common, "grid-16-runs", round(naive / 60, 1), measured_total,
                             round(naive / 60 / float(measured_total), 1), "measured"])  # fmt: skip
    print(f"appended to {args.csv}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
