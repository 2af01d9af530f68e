"""Prediction latency and service throughput (issue 7), and `lumbar predict` with the bundled
sagittal models (issue 16).

Sagittal (--mode sagittal, the default): real SPIDER slices through `lumbar predict`'s library
path (`lumbar.inference.batch.predict_inputs`, localise + grade, no Grad-CAM, outputs written
to a temporary folder): images per second for the whole call (reading, one localiser batch,
grading, overlays, CSV, summary) and for the models alone (`grade_slices` on slices already
read); then one phantom study's latency (sagittal T2 read, 3 central slices localised and
fused, discs graded, outputs written), p50 / p95 over --runs runs after the models are loaded
and one warm-up. Targets on 2 cores: at least 10 images/s, a study under 1 s p50. The CPU
seconds used per image and per study are recorded too: on a shared machine they vary much
less with the load than the wall-clock figures.

Latency: `Predictor.predict_study` on one phantom study (ingest, selection, ROI, 5 axial
images, class probabilities, Grad-CAM overlays; no files written), p50 / p95 over --runs runs
after one warm-up, with EfficientNet-Lite0 and VGG16 at 224x224. Targets on 2 cores: p50 under
1 s (EfficientNet-Lite0) and under 3 s (VGG16). Latency does not depend on the weights' values,
so the models are built from scratch unless --run gives a trained run folder.

Throughput: `lumbar serve`'s app under uvicorn on 127.0.0.1, --clients concurrent clients each
POSTing the study's zip --requests times; studies per second and per-request p50.

Usage:
    .venv/bin/python benchmarks/predict.py --threads 2          # sagittal, bundled models
    .venv/bin/python benchmarks/predict.py --mode axial         # synthesises a study in a temp dir
    .venv/bin/python benchmarks/predict.py --mode axial --study DIR --run RUN --threads 1
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny-run helper

HERE = Path(__file__).resolve().parent
TOKEN = "benchmark-token-0123456789"
SPIDER = HERE.parents[1] / "shared" / "data" / "spider-sagittal"
COLUMNS = [
    "date", "mode", "backbone", "threads", "runs", "p50_s", "p95_s", "service_clients",
    "service_studies_per_s", "service_request_p50_s", "images", "images_per_s",
    "models_images_per_s", "cpu_s_per_image", "study_cpu_s_p50", "load_avg_1m", "cpu", "cores",
]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency(predictor, study: Path, runs: int) -> list[float]:
    predictor.predict_study(study)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.predict_study(study)
        times.append(time.perf_counter() - start)
    return times


def throughput(predictor, study: Path, clients: int, requests: int) -> tuple[float, list[float]]:
    import httpx
    import uvicorn

    from lumbar.inference.serve import create_app

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(study.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(study).as_posix())
    body = buffer.getvalue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(predictor, TOKEN), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def client(_: int) -> list[float]:
        out = []
        with httpx.Client(timeout=300) as http:
            for _ in range(requests):
                start = time.perf_counter()
                r = http.post(
                    f"http://127.0.0.1:{port}/v1/predict",
                    content=body,
                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/zip"},
                )
                r.raise_for_status()
                out.append(time.perf_counter() - start)
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        per_request = [t for ts in pool.map(client, range(clients)) for t in ts]
    wall = time.perf_counter() - start
    server.should_exit = True
    thread.join(timeout=10)
    return clients * requests / wall, per_request


def sagittal(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """Images/s over SPIDER slices and a phantom study's p50 through predict_inputs."""
    import torch

    from lumbar.inference.batch import load_predict_models, predict_inputs
    from lumbar.inference.inputs import read_sagittal_image
    from lumbar.inference.sagittal import grade_slices

    images = sorted((args.spider / "images").glob("*.png"))[: args.images]
    if not images:
        raise SystemExit(f"no SPIDER slices under {args.spider}/images")
    study = args.study
    if study is None:
        from lumbar.synth import synthesize_cohort

        synthesize_cohort(tmp / "studies", patients=1, seed=3, workers=1, progress=False)
        study = next(p for p in (tmp / "studies").iterdir() if p.is_dir())
    models = load_predict_models(None)
    quiet = lambda _: None  # noqa: E731
    predict_inputs([str(images[0])], tmp / "warm", models, gradcam=False, echo=quiet)
    start, cpu = time.perf_counter(), time.process_time()
    batch = predict_inputs([str(p) for p in images], tmp / "out", models, gradcam=False, echo=quiet)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"predict_inputs: {len(images)} slices, {batch.failed} without prediction, "
          f"{batch.discs} discs in {wall:.2f} s", flush=True)  # fmt: skip
    slices = [[read_sagittal_image(p)] for p in images]
    start = time.perf_counter()
    grade_slices(models.finder, models.grader, slices, gradcam=False)
    models_wall = time.perf_counter() - start
    predict_inputs([str(study)], tmp / "study-warm", models, gradcam=False, echo=quiet)
    times, cpu_times = [], []
    for k in range(args.runs):
        start, study_cpu = time.perf_counter(), time.process_time()
        done = predict_inputs([str(study)], tmp / f"study-{k}", models, gradcam=False, echo=quiet)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - study_cpu)
        if done.failed:
            raise SystemExit(f"the phantom study failed: {done.inputs[0].error}")
    return {
        "mode": "sagittal",
        "backbone": "bundled localiser + grader",
        "threads": torch.get_num_threads(),
        "runs": args.runs,
        "p50_s": round(statistics.median(times), 3),
        "p95_s": round(percentile(times, 95), 3),
        "images": len(images),
        "images_per_s": round(len(images) / wall, 2),
        "models_images_per_s": round(len(images) / models_wall, 2),
        # CPU seconds the process used (all its threads): on a machine shared with other jobs
        # the wall-clock figures above depend on the load; these do much less
        "cpu_s_per_image": round(cpu / len(images), 3),
        "study_cpu_s_p50": round(statistics.median(cpu_times), 3),
    }


def append_rows(path: Path, rows: list[dict[str, object]]) -> None:
    """Append rows to the CSV, widening its header when it lacks a column (old rows kept)."""
    old: list[dict[str, str]] = []
    columns = list(COLUMNS)
    if path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            old = [{**row, "mode": row.get("mode") or "axial"} for row in reader]  # before modes
            columns += [c for c in reader.fieldnames or [] if c not in columns]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows([*old, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("sagittal", "axial"), default="sagittal")
    parser.add_argument("--study", type=Path, help="one study folder (default: a phantom)")
    parser.add_argument("--spider", type=Path, default=SPIDER, help="spider-sagittal folder")
    parser.add_argument("--images", type=int, default=134, help="SPIDER slices to time")
    parser.add_argument("--run", type=Path, action="append", help="run folder(s) to time")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3, help="per client")
    parser.add_argument("--csv", type=Path, default=HERE / "predict.csv")
    args = parser.parse_args()

    import torch
    from helpers.tiny_run import make_tiny_run

    from lumbar.inference.predict import Predictor

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="lumbar-bench-predict-"))
    load = os.getloadavg()
    machine = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "load_avg_1m": round(load[0], 2),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    if args.mode == "sagittal":
        row = {**machine, **sagittal(args, tmp)}
        print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        append_rows(args.csv, [row])
        return
    study = args.study
    if study is None:
        from lumbar.synth import synthesize_cohort

        synthesize_cohort(tmp / "studies", patients=1, seed=3, workers=1, progress=False)
        study = next(p for p in (tmp / "studies").iterdir() if p.is_dir())
    runs = args.run or [
        make_tiny_run(tmp / "efficientnet_lite0", "efficientnet_lite0", size=224, roi="grid"),
        make_tiny_run(tmp / "vgg16", "vgg16", size=224, roi="grid"),
    ]
    rows = []
    for run in runs:
        predictor = Predictor.load(run)
        times = latency(predictor, study, args.runs)
        row = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
            "mode": "axial",
            "backbone": predictor.config.get("backbone"),
            "threads": torch.get_num_threads(),
            "runs": args.runs,
            "p50_s": round(statistics.median(times), 3),
            "p95_s": round(percentile(times, 95), 3),
            "load_avg_1m": round(load[0], 2),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        }
        if row["backbone"] == "efficientnet_lite0":
            rate, per_request = throughput(predictor, study, args.clients, args.requests)
            row["service_clients"] = args.clients
            row["service_studies_per_s"] = round(rate, 3)
            row["service_request_p50_s"] = round(statistics.median(per_request), 3)
        rows.append(row)
        print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    append_rows(args.csv, rows)


if __name__ == "__main__":
    main()
