"""Fuzz `lumbar ingest --export-dicom` with thousands of mutated DICOM files (issue 17).

Mutants of real MR files (pydicom, pydicom-data) and of phantom files (`lumbar synth`) are made
by the seeded mutator of tests/helpers/dicom_mutator.py (truncation, bit flips, wrong lengths
and VRs, duplicated and missing elements, odd sizes); each batch also holds the phantom
patients with 30% of their files damaged (so damaged files reach selection, decoding and
de-identification), and is ingested by the real command line with --export-dicom.

Prints, per batch and in total: files/s, the count of unaccounted files (neither indexed nor
in the report with a reason; must be 0), and whether the exit code followed the documented
rule (0 when images.csv lists at least one image, 2 when nothing usable was found) with no
traceback. Figures go to benchmarks/fuzz_ingest.csv.

Usage: python benchmarks/fuzz_ingest.py [--mutants 3000] [--batch 500] [--seed 17] [--workers 2]
                                        [--patients 4]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.dicom_mutator import (  # noqa: E402
    real_mr_sources,
    unaccounted_files,
    write_damaged_study,
    write_mutants,
)

SECRET = "fuzz-benchmark-secret"


def run_batch(src: Path, out: Path, workers: int) -> tuple[float, int, str, int]:
    """(seconds, exit code, stderr, images listed) of one `lumbar ingest` run."""
    env = {**os.environ, "LUMBAR_PSEUDONYM_SECRET": SECRET, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "lumbar.cli", "ingest", str(src), str(out)]
    command += ["--export-dicom", "--report-paths", "-j", str(workers)]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    images = 0
    if (out / "images.csv").is_file():
        with (out / "images.csv").open(newline="") as handle:
            images = sum(1 for _ in csv.DictReader(handle))
    return seconds, proc.returncode, proc.stderr, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=3000, help="mutants of single files")
    parser.add_argument("--batch", type=int, default=500, help="mutants per ingest run")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--patients", type=int, default=4, help="phantom patients per batch")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder")
    parser.add_argument("--csv", type=Path, default=Path(__file__).with_suffix(".csv"))
    args = parser.parse_args()

    from lumbar.ingest.read import iter_files
    from lumbar.synth import synthesize_cohort

    work = args.work or Path(tempfile.mkdtemp(prefix="lumbar-fuzz-"))
    phantom = work / "phantom"
    if not phantom.is_dir():
        synthesize_cohort(phantom, patients=args.patients, seed=5, workers=1, progress=False)
    phantom_files = [p for p in iter_files(phantom) if p.suffix != ".csv"]
    sources = real_mr_sources() + [(p.name, p.read_bytes()) for p in phantom_files[::4]]
    print(f"{len(sources)} source files, {len(phantom_files)} phantom files damaged per batch")

    totals = {"files": 0, "seconds": 0.0, "unaccounted": 0, "bad_exit": 0, "mutants": 0}
    for batch, first in enumerate(range(0, args.mutants, args.batch)):
        count = min(args.batch, args.mutants - first)
        src, out = work / f"src-{batch}", work / f"out-{batch}"
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        studies = [(p.relative_to(phantom).as_posix(), p.read_bytes()) for p in phantom_files]
        damaged = write_damaged_study(studies, str(src), 0.3, args.seed * 1000 + batch)
        write_mutants(sources, str(src / "mutants"), count, args.seed * 1000 + batch)
        count += len(damaged)
        files = sum(1 for _ in iter_files(src))
        seconds, code, stderr, images = run_batch(src, out, args.workers)
        expected = 0 if images else 2
        good_exit = code == expected and "Traceback" not in stderr
        missing = (
            unaccounted_files(str(src), str(out), SECRET.encode())
            if (out / "ingest-report.csv").is_file()
            else ["(no report)"] * files
        )
        totals["files"] += files
        totals["mutants"] += count
        totals["seconds"] += seconds
        totals["unaccounted"] += len(missing)
        totals["bad_exit"] += 0 if good_exit else 1
        print(
            f"batch {batch}: {files} files ({count} mutants) in {seconds:.1f} s = "
            f"{files / seconds:.0f} files/s; exit {code} (expected {expected}); "
            f"{images} images; unaccounted {len(missing)}"
        )
        if not good_exit:
            print(stderr[-2000:])
        if missing:
            print("  unaccounted:", ", ".join(missing[:10]))
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    rate = totals["files"] / totals["seconds"] if totals["seconds"] else 0.0
    print(
        f"total: {totals['files']} files ({totals['mutants']} mutants) at {rate:.0f} files/s; "
        f"unaccounted files: {totals['unaccounted']}; runs with a wrong exit code: "
        f"{totals['bad_exit']}"
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    rows = [
        ("files", totals["files"], "files"),
        ("mutants", totals["mutants"], "files"),
        ("ingest_rate", f"{rate:.0f}", "files/s"),
        ("unaccounted_files", totals["unaccounted"], "files"),
        ("runs_with_wrong_exit_code", totals["bad_exit"], "runs"),
    ]
    with args.csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("metric", "value", "unit", "seed", "batch", "workers", "cpus", "date_utc"))
        for metric, value, unit in rows:
            writer.writerow(
                (metric, value, unit, args.seed, args.batch, args.workers, os.cpu_count(), stamp)
            )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
