"""The sagittal grader on SPIDER: the recipe's ablation table, 5-fold patient-grouped CV.

Every row is cross-validated on the same folds (`lumbar.data.spider.spider_folds`: fold k
tests, fold k+1 chooses the penalty, then training + validation patients refit), on the 912
boxed discs of `../shared/data/spider-sagittal/` (one row per disc and slice: the T1, T2 and
T2-SPACE views of one patient's disc are separate rows unless a row fuses them). Figures:
disc_abnormal F1 (threshold 0.5) and ROC AUC, the expected calibration error of the calibrated
probabilities (temperature per fold fitted on the other folds' out-of-fold logits) and Pfirrmann
exact / within-one agreement and quadratic kappa, each with a 95% patient-bootstrap interval.
Baselines beside the models: the level alone (logistic regression on its one-hot), the paper's
dense head trained as `lumbar train --recipe paper` trains it (on the same cached features), and
a standardised logistic regression on the trunk's output.

Frozen features are computed once per crop variant and cached (--cache).

Usage:
    .venv/bin/python benchmarks/grader.py --data ../shared/data/spider-sagittal \\
        --cache /tmp/grader-features            # the table, benchmarks/grader.csv
    .venv/bin/python benchmarks/grader.py --speed --threads 2   # images/s, ms per disc
    .venv/bin/python benchmarks/grader.py --e2e benchmarks/localize-oof.csv  # grader-e2e.csv
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from malloc_env import ensure_malloc_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def paper_head_oof(x, y, fold, n_folds=5, epochs=50, seed=0):  # type: ignore[no-untyped-def]
    """Out-of-fold P(abnormal) of the paper's head (dense 256 + ReLU + dropout 0.2, Adam 1e-3,
    batch 64, class-weighted cross-entropy, the epoch of lowest validation loss kept), trained
    on cached pooled features as `lumbar train --recipe paper --mode frozen` trains it."""
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F

    from lumbar.train.steps import inverse_frequency_weights

    out = np.zeros(len(y))
    for k in range(n_folds):
        test = np.flatnonzero(fold == k)
        val = np.flatnonzero(fold == (k + 1) % n_folds)
        train = np.flatnonzero((fold != k) & (fold != (k + 1) % n_folds))
        torch.manual_seed(seed)
        head = nn.Sequential(
            nn.Linear(x.shape[1], 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 2)
        )
        opt = torch.optim.Adam(head.parameters(), lr=1e-3)
        xt, yt = torch.tensor(x[train]).float(), torch.tensor(y[train])
        xv, yv = torch.tensor(x[val]).float(), torch.tensor(y[val])
        weights = inverse_frequency_weights(np.bincount(y[train], minlength=2))
        best, best_state = np.inf, None
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            head.train()
            order = torch.randperm(len(train), generator=gen)
            for i in range(0, len(order), 64):
                b = order[i : i + 64]
                loss = F.cross_entropy(head(xt[b]), yt[b], weight=weights)
                opt.zero_grad()
                loss.backward()
                opt.step()
            head.eval()
            with torch.no_grad():
                vloss = float(F.cross_entropy(head(xv), yv, weight=weights))
            if vloss < best:
                best, best_state = vloss, {k2: v.clone() for k2, v in head.state_dict().items()}
        head.load_state_dict(best_state)
        with torch.no_grad():
            out[test] = torch.softmax(head(torch.tensor(x[test]).float()), 1)[:, 1].numpy()
    return out


def figures_row(name, rows, probs, uncalibrated=None, note=""):  # type: ignore[no-untyped-def]
    """One table row: value and 95% interval of each figure."""
    import numpy as np

    from lumbar.grader.calibration import expected_calibration_error
    from lumbar.grader.evaluate import binary_figures, bootstrap, pfirrmann_figures

    y = rows.targets["disc_abnormal"]
    p = probs["disc_abnormal"]
    row = {"recipe": name, "note": note}
    b = bootstrap(lambda i: binary_figures(y[i], p[i]), rows.patient, resamples=500)
    for key, (v, lo, hi) in b.items():
        row[key], row[f"{key}_low"], row[f"{key}_high"] = v, lo, hi
    if uncalibrated is not None:
        row["ece_uncalibrated"] = expected_calibration_error(uncalibrated["disc_abnormal"], y)
    if "pfirrmann" in probs:
        g, q = rows.targets["pfirrmann"], probs["pfirrmann"]
        pf = bootstrap(lambda i: pfirrmann_figures(g[i], q[i]), rows.patient, resamples=500)
        for key, (v, lo, hi) in pf.items():
            name2 = f"pfirrmann_{key}"
            row[name2], row[f"{name2}_low"], row[f"{name2}_high"] = v, lo, hi
    for t in ("bulging", "herniation", "narrowing"):
        if t in probs:
            row[f"{t}_auc"] = binary_figures(rows.targets[t], probs[t])["auc"]
    return {
        k: (round(v, 4) if isinstance(v, float) and np.isfinite(v) else v) for k, v in row.items()
    }


def ablation(args: argparse.Namespace) -> list[dict]:  # type: ignore[type-arg]
    import numpy as np

    from lumbar.data.spider import read_spider, spider_folds
    from lumbar.grader.data import CropVariant, disc_rows, spider_features
    from lumbar.grader.features import FeatureTrunk
    from lumbar.grader.recipe import Recipe, cross_validate, fuse_views
    from lumbar.grader.train import BUNDLED_RECIPE, BUNDLED_RECIPES

    slices = read_spider(args.data)
    rows = disc_rows(slices)
    folds = spider_folds(slices)
    trunk = FeatureTrunk()
    cache: dict = {}

    def features(v: CropVariant) -> np.ndarray:
        if v not in cache:
            cache[v] = spider_features(slices, v, trunk, args.cache)
        return cache[v]

    two = ("disc_abnormal", "pfirrmann")
    s = lambda scale, size=224, **kw: CropVariant(size, scale, **kw)  # noqa: E731
    lr = Recipe(variants=(s(1.5),), taps=(3,), level=False, balance=False, flip_train=False,
                tta=False)  # fmt: skip
    full = Recipe(variants=(s(1.5),))  # every step of the recipe, crop 1.5 x disc spacing
    bundled = BUNDLED_RECIPE
    level_only = Recipe(variants=(), level=True, flip_train=False, tta=False)
    plan: list[tuple[str, Recipe | None, str]] = [
        ("level only (logistic regression on the level)", level_only, "baseline"),
        ("paper head on frozen features (lumbar train --recipe paper)", None, "baseline"),
        ("logistic regression, standardised, penalty on validation", lr, "baseline"),
        ("  LR without standardisation (centred only)", lr.with_(standardise=False), "ablation"),
        ("  LR with a fixed penalty 1e-3 (not chosen)", lr.with_(l2=1e-3), "ablation"),
        ("+ class balance", lr.with_(balance=True), "cumulative"),
        (
            "+ multi-depth features (4 depths pooled)",
            lr.with_(balance=True, taps=(0, 1, 2, 3)),
            "cumulative",
        ),
        ("+ level one-hot", lr.with_(balance=True, taps=(0, 1, 2, 3), level=True), "cumulative"),
        ("+ flip augmentation", full.with_(tta=False), "cumulative"),
        ("+ TTA flips", full, "cumulative"),
        ("+ crop 1.0 x disc spacing", full.with_(variants=(s(1.0),)), "cumulative"),
        ("+ 3x3 grid pooling", bundled, "cumulative"),
        ("bundled member: grid, crop 0.75, no TTA", BUNDLED_RECIPES[0], "member"),
        ("bundled member: grid, crop 1.0, no TTA", BUNDLED_RECIPES[1], "member"),
        ("bundled member: grid, crop 1.5, no TTA", BUNDLED_RECIPES[2], "member"),
        ("no grid, crop 1.25", full.with_(variants=(s(1.25),)), "variant"),
        ("no grid, crop 2.0", full.with_(variants=(s(2.0),)), "variant"),
        ("no grid, crop 1.5 at 160 px", full.with_(variants=(s(1.5, 160),)), "variant"),
        ("no grid, crop 1.5 at 288 px", full.with_(variants=(s(1.5, 288),)), "variant"),
        (
            "no grid, crop 1.5 not turned to the spine axis",
            full.with_(variants=(s(1.5, align=False),)),
            "variant",
        ),
        (
            "no grid, crop 1.5, contrast stretched per crop",
            full.with_(variants=(s(1.5, contrast="crop"),)),
            "variant",
        ),
        (
            "no grid, multi-scale (crops 1.0 + 2.0 concatenated)",
            full.with_(variants=(s(1.0), s(2.0))),
            "variant",
        ),
        (
            "grid 1.0 + slice context (minus the slice's mean)",
            bundled.with_(context=True),
            "variant",
        ),
        ("grid 1.0 without class balance", bundled.with_(balance=False), "variant"),
    ]
    results: dict[str, object] = {}
    table = []
    for name, recipe, kind in plan:
        t0 = time.perf_counter()
        if recipe is None:
            x = features(s(1.5))[:, 472:1752]  # the trunk's output (1280), as lumbar train
            fold = np.array([folds[p] for p in rows.patient])
            p = paper_head_oof(x, rows.targets["disc_abnormal"], fold)
            row = figures_row(name, rows, {"disc_abnormal": p}, note=kind)
        else:
            cv = cross_validate(recipe, features, rows, folds,
                                targets=None if kind == "member" else two)  # fmt: skip
            results[name] = cv
            row = figures_row(name, rows, cv.probabilities, cv.uncalibrated, note=kind)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        table.append(row)
        print_row(row)
        write_table(args.csv, table)  # so far (the whole run takes a while)

    def extra(name: str, probs: dict, raw: dict | None = None) -> None:  # type: ignore[type-arg]
        table.append(figures_row(name, rows, probs, raw, note="variant"))
        print_row(table[-1])
        write_table(args.csv, table)

    b = results["+ 3x3 grid pooling"]
    extra(
        "grid 1.0 + fusing the views of a disc (mean probability)",
        fuse_views(b.probabilities, rows),
        fuse_views(b.uncalibrated, rows),
    )  # type: ignore[attr-defined]
    members = ["+ crop 1.0 x disc spacing", "+ TTA flips", "no grid, crop 2.0"]
    ens = {t: np.mean([results[n].probabilities[t] for n in members], axis=0) for t in two}  # type: ignore[attr-defined]
    extra("ensemble of crops 1.0, 1.5, 2.0, no grid (mean probability)", ens)
    members = [f"bundled member: grid, crop {c}, no TTA" for c in ("0.75", "1.0", "1.5")]
    every = results[members[0]].probabilities  # type: ignore[attr-defined]
    ens = {t: np.mean([results[n].probabilities[t] for n in members], axis=0) for t in every}  # type: ignore[attr-defined]
    raw = {t: np.mean([results[n].uncalibrated[t] for n in members], axis=0) for t in every}  # type: ignore[attr-defined]
    extra("BUNDLED: ensemble of grid crops 0.75, 1.0, 1.5 (mean probability)", ens, raw)
    extra("BUNDLED + fusing the views of a disc", fuse_views(ens, rows), fuse_views(raw, rows))
    return table


def print_row(row: dict) -> None:  # type: ignore[type-arg]
    def ci(key: str) -> str:
        if key not in row:
            return " " * 19
        return f"{row[key]:.3f} [{row[key + '_low']:.3f},{row[key + '_high']:.3f}]"

    print(
        f"{row['recipe'][:62]:<62} F1 {ci('f1')} AUC {ci('auc')} ECE {row['ece']:.3f} "
        f"Pf exact {ci('pfirrmann_exact')} within1 {ci('pfirrmann_within1')} "
        f"kappa {ci('pfirrmann_kappa')}",
        flush=True,
    )


def write_table(path: Path, table: list[dict]) -> None:  # type: ignore[type-arg]
    """The rows so far, dated, as CSV."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    columns: list[str] = []
    for row in table:
        row.setdefault("date", stamp)
        row.setdefault("machine", platform.machine())
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)


def main() -> None:
    ensure_malloc_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "spider-sagittal"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/lumbar-grader-features"))
    parser.add_argument("--csv", type=Path, default=HERE / "grader.csv")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed", action="store_true", help="time the bundled grader only")
    parser.add_argument("--images", type=int, default=40, help="slices timed by --speed")
    parser.add_argument("--members", type=int, nargs="*", help="--speed: only these members")
    parser.add_argument("--e2e", type=Path, help="localize-oof.csv: also grade localised discs")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.speed:
        speed(args)
        return
    if args.e2e is not None:
        from lumbar.grader.train import BUNDLED_RECIPES

        table = end_to_end(args, BUNDLED_RECIPES)
        if args.csv == HERE / "grader.csv":
            args.csv = HERE / "grader-e2e.csv"
    else:
        table = ablation(args)
    write_table(args.csv, table)
    print(f"wrote {args.csv}")


def end_to_end(args: argparse.Namespace, recipes) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """Localise + grade from the image: each slice's out-of-fold localised discs (--e2e CSV,
    benchmarks/localize-oof.csv: image, level, x, y, confidence, fold) cropped where the
    localiser put them and graded by the grader of the same CV round (which never saw that
    patient); matched to the truth by level. A disc the localiser missed or did not name
    counts in `found`; the figures are on the found discs, beside the same discs graded at
    their true centres (so the difference is what localisation errors cost)."""
    import numpy as np

    from lumbar.data.imageio import read_uint8
    from lumbar.data.spider import read_spider, spider_folds
    from lumbar.grader.data import DiscRows, disc_rows, slice_crops, spider_features
    from lumbar.grader.features import FeatureTrunk
    from lumbar.grader.head import logits_to_probabilities
    from lumbar.grader.recipe import cross_validate, design

    slices = read_spider(args.data)
    rows = disc_rows(slices)
    folds = spider_folds(slices)
    trunk = FeatureTrunk()
    cache: dict = {}

    def features(v):  # type: ignore[no-untyped-def]
        if v not in cache:
            cache[v] = spider_features(slices, v, trunk, args.cache)
        return cache[v]

    found: dict[tuple[str, str], tuple[float, float, float]] = {}
    with open(args.e2e, newline="", encoding="utf-8") as handle:
        for r in csv.DictReader(handle):
            if not r["level"]:
                continue
            key = (Path(r["image"]).name, r["level"])
            conf = float(r["confidence"])
            if key not in found or conf > found[key][2]:
                found[key] = (float(r["x"]), float(r["y"]), conf)
    matched, located = [], []  # row index in `rows`, localised (level, x, y) per slice
    n = 0
    for s in slices:
        discs = []
        for d in s.discs:
            hit = found.get((s.image.name, d.level))
            if hit is not None:
                matched.append(n)
                discs.append((d.level, hit[0], hit[1]))
            n += 1
        located.append(discs)
    matched_idx = np.array(matched, dtype=np.int64)
    sub = DiscRows(rows.patient[matched_idx], rows.sequence[matched_idx], rows.level[matched_idx],
                   rows.slice_index[matched_idx],
                   {t: v[matched_idx] for t, v in rows.targets.items()})  # fmt: skip
    loc_cache: dict = {}

    def loc_features(v):  # type: ignore[no-untyped-def]
        if v not in loc_cache:
            parts = []
            for s, discs in zip(slices, located, strict=True):
                if discs:
                    image = read_uint8(s.image)
                    crops = slice_crops(image, discs, s.spacing_mm, v)
                    parts.append(trunk.features(crops, grid=v.grid))
            loc_cache[v] = np.concatenate(parts)
        return loc_cache[v]

    fold = np.array([folds[p] for p in sub.patient])
    members, truths = [], []
    for recipe in recipes:
        cv = cross_validate(recipe, features, rows, folds)
        x = design(recipe, loc_features, sub, flip=False)
        xf = design(recipe, loc_features, sub, flip=True) if recipe.tta else x
        logits = {t: np.zeros((len(sub), cv.logits[t].shape[1])) for t in cv.logits}
        for k, head in enumerate(cv.heads):
            inside = fold == k
            raw = head.raw_logits(x[inside])
            if recipe.tta:
                raw = (raw + head.raw_logits(xf[inside])) / 2
            for t in logits:
                logits[t][inside] = raw[:, head.columns(t)] / cv.fold_temperature[k][t]
        members.append(logits_to_probabilities(logits))
        truths.append({t: p[matched_idx] for t, p in cv.probabilities.items()})
    e2e = {t: np.mean([m[t] for m in members], axis=0) for t in members[0]}
    truth = {t: np.mean([m[t] for m in truths], axis=0) for t in truths[0]}
    share = len(matched_idx) / len(rows)
    table = [
        figures_row(f"end to end: localised discs ({share:.1%} of {len(rows)} found and named)",
                    sub, e2e, note="e2e"),
        figures_row("the same discs at their true centres", sub, truth, note="e2e"),
    ]  # fmt: skip
    for row in table:
        row["found"] = round(share, 4)
        print_row(row)
    return table


def speed(args: argparse.Namespace) -> None:
    """Images/s and ms per disc of the bundled grader (crops + trunk + head, with its test-time
    flips, without Grad-CAM) on --images real slices, batched as `lumbar predict` batches them,
    and the p50 of one slice at a time; the model is loaded first (not timed)."""
    import numpy as np
    import torch

    from lumbar.data.imageio import read_uint8
    from lumbar.data.spider import read_spider
    from lumbar.grader.model import load_grader

    slices = read_spider(args.data)[: args.images]
    batch = [
        (read_uint8(s.image), [(d.level, *d.centre) for d in s.discs], s.spacing_mm) for s in slices
    ]
    discs = sum(len(b[1]) for b in batch)
    t0 = time.perf_counter()
    grader = load_grader(members=args.members)
    load = time.perf_counter() - t0
    grader.grade_batch(batch[:2])  # warm-up
    t0 = time.perf_counter()
    grader.grade_batch(batch)
    batched = time.perf_counter() - t0
    single = []
    for item in batch[: min(len(batch), 12)]:
        t0 = time.perf_counter()
        grader.grade_batch([item])
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    grader.grade_batch(batch[:4], gradcam=True)
    cam = time.perf_counter() - t0
    cam_discs = sum(len(b[1]) for b in batch[:4])
    print(
        f"bundled grader, {torch.get_num_threads()} torch threads, {len(batch)} slices / "
        f"{discs} discs, {len(grader.members)} member(s) at {grader.variant.size} px, "
        f"test-time flips {any(m.recipe.tta for m in grader.members)}: "
        f"load {load:.2f} s; batched {len(batch) / batched:.1f} images/s, "
        f"{1000 * batched / discs:.1f} ms per disc; one slice at a time p50 "
        f"{1000 * float(np.median(single)):.0f} ms; with Grad-CAM "
        f"{1000 * cam / cam_discs:.1f} ms per disc"
    )


if __name__ == "__main__":
    main()
