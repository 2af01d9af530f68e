"""Benchmark `lumbar ingest` on phantom studies (issue: DICOM ingest, performance).

Prints, measured in the same run on the same files:
  1. header indexing (files/s) with `lumbar ingest`'s indexer, against a naive single-process
     loop of full `pydicom.dcmread` calls (pixels included), and the ratio between them;
  2. a full ingest (index, classify, select, export 8 PNGs per patient) of a cohort of
     phantom patients (default 181, the paper's labelled cohort), in seconds.

Usage: python benchmarks/ingest.py [--patients 181] [--workers 0] [--work DIR]
The cohort is synthesised once into DIR (default: a temporary folder) and reused if present.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

# The header fields the indexer stores, read the naive way (pydicom attribute access).
FIELDS = (
    "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID",
    "Modality", "StudyDate", "SeriesNumber", "SeriesDescription", "ProtocolName", "ImageType",
    "InstanceNumber", "NumberOfFrames", "Rows", "Columns", "EchoTime", "RepetitionTime",
    "ImageOrientationPatient", "ImagePositionPatient", "BitsAllocated", "SamplesPerPixel",
)  # fmt: skip


def naive_loop(files: list[Path]) -> tuple[float, float]:
    """Files/s of plain single-process loops of full `dcmread` (pixels included): reading only,
    and reading the same header fields the indexer stores (the equal-work baseline)."""
    import pydicom

    start = time.perf_counter()
    for path in files:
        with contextlib.suppress(Exception):
            _ = pydicom.dcmread(path).PixelData
    bare = len(files) / (time.perf_counter() - start)
    start = time.perf_counter()
    for path in files:
        with contextlib.suppress(Exception):
            ds = pydicom.dcmread(path)
            _ = [ds.get(keyword) for keyword in FIELDS], ds.PixelData
    same_work = len(files) / (time.perf_counter() - start)
    return bare, same_work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=181)
    parser.add_argument("--workers", type=int, default=0, help="0 = one per core")
    parser.add_argument("--work", type=Path, default=None, help="folder for cohort and outputs")
    parser.add_argument(
        "--csv", type=Path, default=Path(__file__).with_suffix(".csv"), help="figures CSV"
    )
    parser.add_argument(
        "--naive-sample",
        type=int,
        default=1500,
        help="files read by the naive loop (it is slow; a sample suffices)",
    )
    args = parser.parse_args()

    from lumbar.ingest import IngestOptions, ingest
    from lumbar.ingest.index import INDEX_FILE, StudyIndex, default_workers, index_folder
    from lumbar.ingest.read import iter_files
    from lumbar.synth import synthesize_cohort

    work = args.work or Path(tempfile.mkdtemp(prefix="lumbar-bench-"))
    cohort = work / f"cohort-{args.patients}"
    if not (cohort / "labels.csv").exists():
        t0 = time.perf_counter()
        synthesize_cohort(
            cohort, patients=args.patients, seed=0, workers=args.workers, force=True, progress=False
        )
        print(f"synthesised {args.patients} phantom patients in {time.perf_counter() - t0:.0f} s")
    files = [p for p in iter_files(cohort) if p.suffix != ".csv"]
    workers = default_workers(args.workers)
    print(
        f"cohort: {args.patients} patients, {len(files)} DICOM files, "
        f"{sum(p.stat().st_size for p in files) / 2**20:.0f} MiB; {workers} worker(s), "
        f"{os.cpu_count()} CPU(s)"
    )

    # Warm the page cache so both measurements read from memory, not disk.
    for path in files:
        path.read_bytes()

    sample = files[:: max(1, len(files) // args.naive_sample)][: args.naive_sample]
    bare, naive = naive_loop(sample)

    index_dir = work / "index-only"
    shutil.rmtree(index_dir, ignore_errors=True)
    index_dir.mkdir(parents=True)
    secret = b"benchmark"
    index = StudyIndex.open(index_dir / INDEX_FILE, secret)
    stats, _ = index_folder(index, cohort, iter_files(cohort), secret, workers)
    index.close()
    indexed = stats.read / stats.seconds
    print(
        f"header indexing (lumbar ingest, {workers} workers, into SQLite): {indexed:,.0f} files/s "
        f"({stats.read} files in {stats.seconds:.1f} s)"
    )
    print(
        f"naive single-process full dcmread loop ({len(sample)} files): {naive:,.0f} files/s "
        f"extracting the same header fields (ratio {indexed / naive:.1f}x); "
        f"{bare:,.0f} files/s reading only (ratio {indexed / bare:.1f}x)"
    )
    print(f"  -> the paper's 48,642 images would index in {48642 / indexed:.0f} s")

    out = work / "ingest-out"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    summary = ingest(cohort, out, IngestOptions(workers=args.workers))
    full = time.perf_counter() - t0
    print(
        f"full ingest of {summary.patients} patients ({summary.complete_patients} complete, "
        f"{summary.images} images): {full:.1f} s"
    )
    t0 = time.perf_counter()
    ingest(cohort, out, IngestOptions(workers=args.workers))
    rerun = time.perf_counter() - t0
    print(f"rerun (resume, nothing changed): {rerun:.1f} s")
    rows = [
        ("header_indexing", f"{indexed:.0f}", "files/s"),
        ("naive_dcmread_same_fields", f"{naive:.0f}", "files/s"),
        ("naive_dcmread_read_only", f"{bare:.0f}", "files/s"),
        ("indexing_ratio_vs_naive_same_fields", f"{indexed / naive:.2f}", "x"),
        ("full_ingest", f"{full:.1f}", "s"),
        ("rerun_unchanged", f"{rerun:.1f}", "s"),
    ]
    stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    context = f"{args.patients},{len(files)},{workers},{os.cpu_count()},{stamp}"
    lines = ["metric,value,unit,patients,files,workers,cpus,date_utc"]
    lines += [f"{name},{value},{unit},{context}" for name, value, unit in rows]
    args.csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"figures written to {args.csv}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
