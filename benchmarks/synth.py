"""Time `lumbar synth` on the paper's cohort (181 patients); target: under 2 minutes on 2 cores.

Prints the measured wall time next to a single-process estimate (per-patient time of a few
patients in one process, times 181), so the parallel speed-up is measured in the same run.

    python benchmarks/synth.py [--patients 181] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from lumbar.synth import synthesize_cohort

TARGET_SECONDS = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=181)
    parser.add_argument("--probe", type=int, default=6, help="patients for the 1-process probe")
    parser.add_argument("--keep", type=Path, help="keep the cohort here (e.g. for the baseline)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lumbar-bench-synth-"))
    try:
        probe = synthesize_cohort(
            work / "probe", patients=args.probe, seed=1, workers=1, progress=False
        )
        per_patient = probe.seconds / args.probe
        out = args.keep or work / "cohort"
        full = synthesize_cohort(
            out, patients=args.patients, seed=0, workers=0, force=True, progress=False
        )
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)
    estimate = per_patient * args.patients
    print(f"cores                       {os.cpu_count()}")
    print(f"patients                    {full.patients}")
    print(f"DICOM files                 {full.files} ({size:,.0f} MiB)")
    print(f"1 process, per patient      {per_patient:.2f} s (estimate for all: {estimate:.1f} s)")
    print(
        f"measured, all cores         {full.seconds:.1f} s "
        f"({full.files / full.seconds:.0f} files/s, speed-up {estimate / full.seconds:.2f}x)"
    )
    verdict = "meets" if full.seconds < TARGET_SECONDS else "MISSES"
    print(f"target                      < {TARGET_SECONDS:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
