"""Disc localiser (issue 15): 5-fold CV on SPIDER, negatives, speed.

CV: the out-of-fold outputs of a `lumbar localize train` run (RUN/fold-k), decoded with
thresholds and calibration fitted on the other four folds (nested), scored per true disc:
found and correctly named within half the local disc spacing (target >= 97%), median error
(mm, series.csv spacing) of those, share of slices with every level right; all, T1, T2,
T2-SPACE, with 95% patient-bootstrap intervals. Beside it a layout baseline: each level at its
mean relative position (x / width, y / height) on the training folds' slices.

Negatives: the localiser (bundled unless --model) on images without a spine: phantom brain
slices, phantom axial lumbar slices, blank and noise images, and real axial slices of
`../shared/data/lumbar-mri-unlabelled/` (chosen by eye, listed below) given as sagittal:
the share of images with any disc, with a disc of confidence >= 0.5, and the highest
confidence.

Fields of view: each fold's model on its held-out slices cut halfway between L4-L5 and L5-S1
(no sacrum, no L5-S1: nothing should be named L5-S1) or halfway between L2-L3 and L3-L4 (only
the three lowest discs): slices with a wrong level name, and the remaining discs found and named.

Phantom studies: `localize_study` on synth's paper, thoracic (T9-S1) and cutsacrum fields of
view against their true disc centres (3D, patient mm).

Speed: s per sagittal slice (`Localizer.find` on one image, windowing + network + decoding;
model loaded) on --threads threads, median over SPIDER slices after a warm-up; and a whole
phantom study (`localize_study`: header reading, 3 slices, fusion).

Usage:
    .venv/bin/python benchmarks/localize.py --run RUN      # RUN from `lumbar localize train`
    .venv/bin/python benchmarks/localize.py --skip-cv      # negatives, phantoms, speed
    .venv/bin/python benchmarks/localize.py --only-speed   # speed again (the load varies)
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from malloc_env import ensure_malloc_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
COLUMNS = (
    "date",
    "section",
    "subset",
    "figure",
    "value",
    "low",
    "high",
    "n",
    "threads",
    "load_avg_1m",
    "cpu",
    "cores",
)
# Real axial slices of lumbar-mri-unlabelled (file-name hashes), picked by eye from a contact
# sheet of all 198 files; the others are sagittal or coronal.
REAL_AXIAL = [
    "00746a9b727e",
    "07ebad8569c2",
    "08cb840271d4",
    "0b5bcdc8db90",
    "11bb8bcba084",
    "14fcda4c2133",
    "1586daedcfb2",
    "164fcce37f98",
    "1a6124d45825",
    "1a898e19ff99",
    "228bd935390b",
    "25db0190e42e",
    "25ecbbbf96e2",
    "275327c2e855",
    "27a4c6c5a71f",
    "2b0fa26879ae",
    "30ec0adf4c63",
    "31a216ba2967",
    "349d058fae18",
    "34a51f127adf",
    "3a26d4a20a18",
    "3a404c593401",
    "3aed568213a2",
    "3af2bb6d35cb",
    "3bdcbb4c852b",
    "3e475a397105",
    "3feffca54625",
    "41fe21739584",
    "436673a53db3",
    "4404e353003d",
    "45b3027f81ff",
    "47c7e60a3123",
    "481b02a37e5a",
    "48666b135d69",
    "49321bf46929",
    "4c25778fbbf3",
    "4c7c87a097d2",
    "4e2fdd404955",
    "51907d3b9cb2",
    "599496de2359",
    "5cbe36fdd3db",
    "5d6079591400",
    "610f690203ce",
    "687ca30fd942",
    "69852beaee5d",
    "6b09e7be1c1f",
    "6b230e9c9215",
    "6ccc535d0d30",
    "6f0f84c9983c",
    "6f413bbb8a97",
    "72cf059d8370",
    "736056b8e257",
    "7461b91615fb",
    "75963330b260",
    "77e4675799dd",
    "7a01b3be7373",
    "80d98ac2cf94",
    "84d48c2c0a5c",
    "854a5f88c7cd",
    "8586a6f9422c",
    "896cc08e9670",
    "8e1ff15d3473",
    "90fd465cdb77",
    "919ccb9329e8",
    "933013ee53ab",
    "a29f4a65db4d",
    "a910ef21784f",
    "abba6d13081c",
    "b1e05a985c50",
    "bcc8f3f3ebd9",
    "c059cff29cde",
    "c0b841fc9c99",
    "c7352bc08848",
    "c95fd28a9053",
    "d1b85772dfb6",
    "de8a611b7a65",
    "e9b380f55d9f",
    "ede1a5df43b1",
    "eeb86ae6efe6",
    "f3a5e2ef3b3d",
    "f41f0dce7e39",
    "f70aef85c116",
    "f9ed1be7f2d9",
]


def layout_baseline(data: Path):  # type: ignore[no-untyped-def]
    """Per-disc results of placing each level at its training folds' mean relative position."""
    import numpy as np

    from lumbar.data.spider import read_spider, spider_folds
    from lumbar.localize.data import spider_sample
    from lumbar.localize.decode import Disc
    from lumbar.localize.evaluate import score_slice

    slices = read_spider(data)
    folds = spider_folds(slices)
    samples = [spider_sample(s) for s in slices]
    results = []
    for k in range(5):
        layout: dict[str, list[tuple[float, float]]] = {}
        for s in samples:
            if folds[s.patient] != k:
                h, w = s.image.shape
                for (x, y), level in zip(s.points, s.levels, strict=True):
                    layout.setdefault(level, []).append((x / w, y / h))
        common = {lv: np.mean(v, axis=0) for lv, v in layout.items() if len(v) >= 0.5 * 107}
        for s in samples:
            if folds[s.patient] == k:
                h, w = s.image.shape
                discs = [Disc(lv, p[0] * w, p[1] * h, 1.0) for lv, p in common.items()]
                results += score_slice(s, discs)
    return results


def negative_images() -> dict[str, list]:  # type: ignore[type-arg]
    """Images without a spine, per set (held out from training: other seeds, real files)."""
    import numpy as np

    from lumbar.data.imageio import read_uint8
    from lumbar.synth.cohort import make_patient
    from lumbar.synth.imaging import texture_bank
    from lumbar.synth.series import StudyBuilder
    from lumbar.synth.sets import brain_slice

    rng = np.random.default_rng(2026)
    bank = texture_bank(600, rng)
    sets: dict[str, list] = {"phantom brain": [brain_slice(rng, bank) for _ in range(40)]}
    axial = []
    for index in range(8):
        frames = StudyBuilder(make_patient(909, index)).axial_t2().frames
        axial += [frames[i].pixels for i in (2, 7, 12)]
    sets["phantom axial"] = axial
    sets["blank"] = [np.zeros((256, 256)), np.full((320, 320), 128.0), np.full((200, 300), 7.0)]
    sets["noise"] = [rng.normal(100, 30, (256, 256)) for _ in range(10)]
    real = SHARED / "lumbar-mri-unlabelled"
    if real.is_dir():
        sets["real axial"] = [read_uint8(real / f"mri_{name}.png") for name in REAL_AXIAL]
    return sets


def negatives(localizer) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    rows = []
    for name, images in negative_images().items():
        found = localizer.find(images, [None] * len(images))
        confidences = [d.confidence for discs in found for d in discs]
        top = max(confidences, default=0.0)
        any_disc = sum(1 for discs in found if discs) / len(found)
        confident = sum(1 for discs in found if any(d.confidence >= 0.5 for d in discs))
        print(
            f"negatives {name:>13}: {len(found)} images, any disc {any_disc:.2f}, "
            f"a disc >= 0.5 on {confident}, highest confidence {top:.3f}"
        )
        rows += [
            {"section": "negatives", "subset": name, "figure": "share_any_disc", "value": any_disc},
            {
                "section": "negatives",
                "subset": name,
                "figure": "share_disc_conf_ge_0.5",
                "value": confident / len(found),
            },
            {"section": "negatives", "subset": name, "figure": "max_confidence", "value": top},
        ]
        for r in rows[-3:]:
            r["n"] = len(found)
    return rows


def speed(localizer, data: Path, threads: int) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    import torch

    from lumbar.data.imageio import read_uint8
    from lumbar.data.spider import read_spider
    from lumbar.localize import localize_study
    from lumbar.synth import synthesize_cohort

    torch.set_num_threads(threads)
    images = [read_uint8(s.image) for s in read_spider(data)[:20]]
    localizer.find(images[:1])  # warm-up
    times = []
    for image in images:
        start = time.perf_counter()
        localizer.find([image])
        times.append(time.perf_counter() - start)
    per_slice = statistics.median(times)
    start = time.perf_counter()
    localizer.find(images[:8])
    batched = (time.perf_counter() - start) / 8
    with tempfile.TemporaryDirectory() as tmp:
        synthesize_cohort(Path(tmp), patients=1, seed=3, progress=False)
        study = next(p for p in Path(tmp).iterdir() if p.is_dir())
        localize_study(study, localizer)
        start = time.perf_counter()
        localize_study(study, localizer)
        study_s = time.perf_counter() - start
    print(
        f"speed ({threads} threads): {per_slice:.3f} s per slice (median of {len(times)}), "
        f"{batched:.3f} s per slice in a batch of 8, {study_s:.3f} s per phantom study "
        f"(3 slices fused)"
    )
    return [
        {"section": "speed", "subset": "slice", "figure": "s_per_slice", "value": per_slice},
        {"section": "speed", "subset": "batch of 8", "figure": "s_per_slice", "value": batched},
        {"section": "speed", "subset": "phantom study", "figure": "s_per_study", "value": study_s},
    ]


def fields_of_view(run: Path, data: Path, decodings) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """Held-out slices cut so the sacrum and L5-S1 are gone, or only L3-L4 and below remain:
    each fold's model and decoding on its own test slices."""
    from dataclasses import replace

    import numpy as np

    from lumbar.data.spider import read_spider, spider_folds
    from lumbar.localize import load_localizer
    from lumbar.localize.data import spider_sample
    from lumbar.localize.evaluate import local_half_spacing, score_slice

    slices = read_spider(data)
    folds = spider_folds(slices)
    samples = [spider_sample(s) for s in slices]
    variants: dict[str, list] = {"sacrum cut": [], "upper lumbar cut": []}
    for k, decoding in decodings.items():
        localizer = load_localizer(run / f"fold-{k}" / "localizer.safetensors")
        localizer.decoding = decoding
        test = [s for s in samples if folds[s.patient] == k]
        for name in variants:
            cut = []
            for s in test:
                i = s.levels.index("L5-S1")
                if name == "sacrum cut":  # end halfway between L4-L5 and L5-S1
                    end = round(float(s.points[i - 1][1] + s.points[i][1]) / 2)
                    keep = s.points[:, 1] < end
                    image = s.image[:end]
                    points = s.points[keep]
                else:  # start halfway between L2-L3 and L3-L4: L3-L4, L4-L5, L5-S1 left
                    start = round(float(s.points[i - 3][1] + s.points[i - 2][1]) / 2)
                    keep = s.points[:, 1] >= start
                    image = s.image[start:]
                    points = s.points[keep] - [0, start]
                levels = tuple(lv for lv, k_ in zip(s.levels, keep, strict=True) if k_)
                cut.append(
                    replace(s, image=np.ascontiguousarray(image), points=points, levels=levels)
                )
            found = localizer.find([c.image for c in cut], [c.spacing_mm for c in cut])
            for c, discs in zip(cut, found, strict=True):
                tol = local_half_spacing(c.points)
                wrong = [
                    d
                    for d in discs
                    if d.level is not None
                    and not any(
                        lv == d.level and np.hypot(d.x - x, d.y - y) <= t
                        for (x, y), lv, t in zip(c.points, c.levels, tol, strict=True)
                    )
                ]
                results = score_slice(c, discs)
                variants[name].append(
                    (
                        bool(wrong),
                        any(d.confidence >= 0.5 for d in wrong),
                        sum(r.right for r in results) / max(1, len(results)),
                        all(d.level is None for d in discs),
                    )
                )
    rows = []
    for name, items in variants.items():
        arr = np.array(items, dtype=float)
        figures = {
            "share_slices_wrong_name": arr[:, 0].mean(),
            "share_slices_wrong_name_conf_ge_0.5": arr[:, 1].mean(),
            "share_remaining_found_named": arr[:, 2].mean(),
            "share_slices_all_unnamed": arr[:, 3].mean(),
        }
        print(
            f"field of view {name:>16}: {len(items)} slices; a wrong name on "
            f"{figures['share_slices_wrong_name']:.3f} (confidence >= 0.5: "
            f"{figures['share_slices_wrong_name_conf_ge_0.5']:.3f}); all unnamed on "
            f"{figures['share_slices_all_unnamed']:.3f}; remaining discs found and named "
            f"{figures['share_remaining_found_named']:.3f}"
        )
        rows += [
            {"section": "field of view", "subset": name, "figure": f, "value": v, "n": len(items)}
            for f, v in figures.items()
        ]
    return rows


def phantom_protocols(localizer, patients: int = 3) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """`localize_study` on phantom studies of three sagittal fields of view against the true
    centres (synth's discs.csv): right = named and within 8 mm (3D) of the disc of that level.
    A named disc whose level the table lacks counts apart: the paper protocol's table lists the
    lumbar discs only, while its images also show the T12-L1 space."""
    import csv as _csv

    import numpy as np
    import pydicom

    from lumbar.localize import localize_study
    from lumbar.synth import synthesize_cohort
    from lumbar.synth.protocols import Protocol

    rows = []
    for protocol in (Protocol.PAPER, Protocol.THORACIC, Protocol.CUTSACRUM):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            synthesize_cohort(root, patients=patients, seed=101, progress=False, protocol=protocol)
            truth: dict[str, dict[str, np.ndarray]] = {}
            with open(root / "discs.csv", newline="") as handle:
                for r in _csv.DictReader(handle):
                    if r.get("sagittal_visible", "1") != "0":
                        xyz = np.array([float(r[k]) for k in ("x_mm", "y_mm", "z_mm")])
                        truth.setdefault(r["study_uid"], {})[r["level"]] = xyz
            right = wrong = unnamed = untabled = total = 0
            errors = []
            for study in sorted(p for p in root.iterdir() if p.is_dir()):
                result = localize_study(study, localizer)
                ds = pydicom.dcmread(result.central, stop_before_pixels=True)
                discs = truth[str(ds.StudyInstanceUID)]
                total += len(discs)
                for d in result.discs:
                    if d.level is None:
                        unnamed += 1
                        continue
                    if d.level not in discs:
                        untabled += 1
                        continue
                    error = float(np.linalg.norm([d.x_mm, d.y_mm, d.z_mm] - discs[d.level]))
                    if error <= 8.0:
                        right += 1
                        errors.append(error)
                    else:
                        wrong += 1
            figures = {
                "share_true_discs_named_right": right / total,
                "wrong_names": float(wrong),
                "named_levels_not_in_truth": float(untabled),
                "unnamed_discs": float(unnamed),
                "median_error_mm": float(np.median(errors)) if errors else float("nan"),
            }
            print(
                f"phantom {protocol.value:>10}: {patients} studies, {total} visible discs; named "
                f"right {figures['share_true_discs_named_right']:.3f}, wrong names {wrong}, "
                f"levels not in the table {untabled}, unnamed {unnamed}, "
                f"median 3D error {figures['median_error_mm']:.2f} mm"
            )
            rows += [
                {"section": "phantom studies", "subset": protocol.value, "figure": f, "value": v}
                for f, v in figures.items()
            ]
    return rows


def cv(run: Path, data: Path, resamples: int) -> list[dict[str, object]]:
    from lumbar.files import write_csv_atomic
    from lumbar.localize.evaluate import summarise
    from lumbar.localize.run import OOF_COLUMNS, evaluate_run, figure_rows

    figures, oof, _, decodings = evaluate_run(data, run, resamples)
    write_csv_atomic(HERE / "localize-oof.csv", oof, OOF_COLUMNS)
    baseline = summarise(layout_baseline(data), resamples)
    rows = []
    for section, figs in (("cv", figures), ("cv layout baseline", baseline)):
        for r in figure_rows(figs):
            print(
                f"{section:>18} {r['sequence']:>8} {r['figure']:<17} {r['value']:.3f} "
                f"[{r['low']:.3f}, {r['high']:.3f}] ({r['discs']} discs, {r['slices']} slices, "
                f"{r['patients']} patients)"
            )
            rows.append(
                {
                    "section": section,
                    "subset": r["sequence"],
                    "figure": r["figure"],
                    "value": r["value"],
                    "low": r["low"],
                    "high": r["high"],
                    "n": r["discs"] if r["figure"] != "slices_all_right" else r["slices"],
                }
            )
    return rows + fields_of_view(run, data, decodings)


def main() -> None:
    ensure_malloc_env()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a `lumbar localize train` run folder")
    parser.add_argument("--data", type=Path, default=SHARED / "spider-sagittal")
    parser.add_argument("--model", type=Path, help="weights for negatives/speed (default bundled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--skip-cv", action="store_true")
    parser.add_argument("--only-speed", action="store_true", help="speed rows only")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from lumbar.localize import load_localizer

    torch.set_num_threads(args.threads)
    rows: list[dict[str, object]] = []
    if not (args.skip_cv or args.only_speed):
        if args.run is None:
            parser.error("--run RUN is needed for the CV (or --skip-cv)")
        rows += cv(args.run, args.data, args.resamples)
    localizer = load_localizer(args.model)
    if not args.only_speed:
        rows += negatives(localizer)
        rows += phantom_protocols(localizer)
    rows += speed(localizer, args.data, args.threads)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    common = {
        "date": stamp,
        "threads": args.threads,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpu": platform.machine(),
        "cores": os.cpu_count(),
    }
    target = HERE / "localize.csv"
    new = not target.exists()
    with open(target, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        for row in rows:
            value = row.get("value")
            writer.writerow(
                {
                    **common,
                    **row,
                    "value": round(value, 4) if isinstance(value, float) else value,
                }
            )
    print(f"appended {len(rows)} rows to {target}")


if __name__ == "__main__":
    main()
