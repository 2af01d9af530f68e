"""Training speed: the naive loop against the cached one, VGG16 frozen and fine-tuned (block5).

The naive loop runs the whole network on every image in every epoch. The cached loop
(`lumbar.train`) runs the frozen prefix once per image and augmentation variant (4 by default)
and then trains only the tail: the head alone when frozen, block5 + head when fine-tuning the
last block. Issue 6 asks, on 905 phantom images for 50 epochs, for at least 10x (frozen) and 3x
(fine-tuned), and for the cached frozen VGG16 run to take under 10 minutes on 2 cores.

What it measures (on --images of the manifest's images, split as in the manifest, 224x224):
    naive step      forward of the whole network + backward of the trainable part + Adam step
    naive val       forward of the whole network, no gradient
    prefix          forward of the frozen stages, no gradient (the cache fill)
    tail step       forward + backward + Adam step of the trainable tail on cached features
and extrapolates each to the full run: n_train x epochs steps, n_val x epochs validations, and
(variants x n_train + n_val) prefix passes. With --full it also runs `lumbar.train.train` for
real on the whole manifest (frozen, cached) and prints the measured wall time.

Accuracy with 4 augmentation variants instead of a fresh draw per epoch is checked with the
CLI (`train-augmentation.csv`): two frozen EfficientNet-Lite0 runs on the same phantom manifest,
`aug_variants: 16` (with 16 epochs, identical to the naive loop) against `aug_variants: 4`,
then `lumbar compare RUN16 RUN4` (paired patient bootstrap).

Usage:
    .venv/bin/python benchmarks/train.py --manifest DS/manifest.csv            # extrapolated
    .venv/bin/python benchmarks/train.py --manifest DS/manifest.csv --full     # + a real run
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from malloc_env import ensure_malloc_env


def _per_image(fn, batches: list, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds per image of fn over the batches: the fastest of `repeats` passes, after a
    warm-up batch (the minimum is the figure least disturbed by other processes)."""
    fn(batches[0])
    images = sum(len(batch) for batch in batches)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            fn(batch)
        best = min(best, time.perf_counter() - start)
    return best / images


def measure(mode: str, args: argparse.Namespace) -> tuple[float, ...]:
    """Seconds per image: naive step, naive val, prefix, tail step, tail val (VGG16, 224 px)."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    from lumbar.data.augment import Augmentation
    from lumbar.data.dataset import ManifestDataset
    from lumbar.models import build_classifier, freeze_backbone, unfreeze_last

    torch.manual_seed(0)
    model = build_classifier("vgg16", 2, "scratch", head="flatten")
    if mode == "frozen":
        freeze_backbone(model)
    else:
        unfreeze_last(model, 1, unit="block")
    model = model.to(memory_format=torch.channels_last)
    data = ManifestDataset(args.manifest, model.preprocessing, target=args.target,
                           split="train", augmentation=Augmentation.paper())  # fmt: skip
    count = min(args.images, len(data))
    index = np.arange(count)
    batches = [
        data.__getitems__([(0, int(i)) for i in index[s : s + args.batch_size]]).images
        .contiguous(memory_format=torch.channels_last)
        for s in range(0, count, args.batch_size)
    ]  # fmt: skip
    labels = torch.from_numpy(data.labels[:count])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    stop = model.num_frozen_stages()

    def step(x: torch.Tensor, start: int) -> None:
        model.train()
        logits = model.forward_tail(x, start)
        loss = F.cross_entropy(logits, labels[: len(x)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def infer(x: torch.Tensor, start: int, stop_at: int | None) -> None:
        model.eval()
        with torch.no_grad():
            if stop_at is None:
                model.forward_tail(x, start)
            else:
                model.forward_stages(x, start, stop_at)

    t_naive = _per_image(lambda x: step(x, 0), batches, args.repeats)
    t_val = _per_image(lambda x: infer(x, 0, None), batches, args.repeats)
    t_prefix = _per_image(lambda x: infer(x, 0, stop), batches, args.repeats)
    model.eval()
    with torch.no_grad():
        cached = [model.forward_stages(x, 0, stop) for x in batches]
    t_tail = _per_image(lambda x: step(x, stop), cached, args.repeats)
    t_tail_val = _per_image(lambda x: infer(x, stop, None), cached, args.repeats)
    return t_naive, t_val, t_prefix, t_tail, t_tail_val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="phantom ROI manifest")
    parser.add_argument("--target", default="disc_abnormal")
    parser.add_argument("--images", type=int, default=64, help="images timed per measurement")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="passes; the fastest counts")
    parser.add_argument("--full", action="store_true", help="also run the cached frozen train")
    parser.add_argument("--csv", type=Path, default=None, help="append results to this CSV")
    args = parser.parse_args()
    ensure_malloc_env()

    import torch

    from lumbar.data.dataset import ManifestDataset
    from lumbar.models.preprocessing import IMAGENET

    load = os.getloadavg()
    sizes = {}
    for split in ("train", "val"):
        data = ManifestDataset(
            args.manifest, IMAGENET, target=args.target, split=split, cache="none"
        )
        sizes[split] = len(data)
    n_train, n_val = sizes["train"], sizes["val"]
    print(f"{n_train} train + {n_val} val images, {args.epochs} epochs, batch "
          f"{args.batch_size}, {torch.get_num_threads()} threads, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    rows = []
    for mode in ("frozen", "finetune"):
        t_naive, t_val, t_prefix, t_tail, t_tail_val = measure(mode, args)
        naive_total = args.epochs * (n_train * t_naive + n_val * t_val)
        cache_fill = (args.variants * n_train + n_val) * t_prefix
        cached_total = cache_fill + args.epochs * (n_train * t_tail + n_val * t_tail_val)
        row = {
            "mode": mode,
            "naive_step_ms": 1e3 * t_naive,
            "naive_val_ms": 1e3 * t_val,
            "prefix_ms": 1e3 * t_prefix,
            "tail_step_ms": 1e3 * t_tail,
            "naive_epoch_s": n_train * t_naive + n_val * t_val,
            "cached_epoch_s": n_train * t_tail + n_val * t_tail_val,
            "cache_fill_s": cache_fill,
            "naive_total_min": naive_total / 60,
            "cached_total_min": cached_total / 60,
            "speedup": naive_total / cached_total,
        }
        rows.append(row)
        print(
            f"VGG16 {mode:8s} per image: naive step {row['naive_step_ms']:.0f} ms, naive val "
            f"{row['naive_val_ms']:.0f} ms | prefix {row['prefix_ms']:.0f} ms, tail step "
            f"{row['tail_step_ms']:.1f} ms\n"
            f"   per epoch: naive {row['naive_epoch_s']:.0f} s, cached "
            f"{row['cached_epoch_s']:.1f} s (+ cache fill {cache_fill:.0f} s once)\n"
            f"   {args.epochs} epochs, extrapolated: naive {row['naive_total_min']:.1f} min, "
            f"cached {row['cached_total_min']:.1f} min -> {row['speedup']:.1f}x "
            f"(target {'10' if mode == 'frozen' else '3'}x)"
        )
    if args.full:
        import tempfile

        from lumbar.train import TrainConfig, train

        with tempfile.TemporaryDirectory(prefix="lumbar-bench-") as tmp:
            cfg = TrainConfig(
                manifest=str(args.manifest), backbone="vgg16", weights="scratch", mode="frozen",
                head="flatten", epochs=args.epochs, lr=1e-3,
            )  # fmt: skip
            result = train(cfg, Path(tmp) / "run", progress=False)
        minutes = result.seconds / 60
        print(f"measured: cached frozen VGG16, {args.epochs} epochs: {minutes:.1f} min")
        rows[0]["measured_total_min"] = result.seconds / 60
    if args.csv is not None:
        new = not args.csv.is_file()
        with open(args.csv, "a", newline="") as handle:
            fields = ["date_utc", "machine", "cpus", "load1", "n_train", "n_val", "epochs",
                      "variants", *rows[0].keys()]  # fmt: skip
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            for row in rows:
                writer.writerow({
                    "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
                    "machine": platform.machine(), "cpus": os.cpu_count(),
                    "load1": f"{load[0]:.2f}", "n_train": n_train, "n_val": n_val,
                    "epochs": args.epochs, "variants": args.variants,
                    **{k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()},
                })  # fmt: skip


if __name__ == "__main__":
    main()
