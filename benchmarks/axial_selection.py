"""Axial slice selection on every phantom scanner protocol: is the chosen slice the true one?

For each protocol (`lumbar.synth.protocols`) and seed, `lumbar synth` writes a few patients with
their true disc centres and true mid-disc axial images (discs.csv); `lumbar ingest` then runs
with each axial selection and disc-centre source below, and every disc's chosen image is
compared with the truth:

- auto / geometry with the true centres;
- auto with the centres the learnt sagittal localiser finds (`lumbar.localize`, the bundled
  model): what `lumbar ingest` does by default;
- auto with the true centres plus Gaussian noise of SIGMA mm per axis (how the figures degrade
  with a localiser's error along the spine);
- auto without centres (as with no sagittal T2 or no localiser), and paper (Eq. 2 only).

Figures: the share of covered discs whose chosen image is the true mid-disc image (target
>= 99 %), wrong picks, discs left out (a disc no slice crosses must be reported, not
guessed), how often auto used Eq. 2 and how often that was right. Also the time of one
study (reading its headers, localising its sagittal T2 series with the model loaded, and the
axial selection itself), as medians over the studies.

Usage:
    .venv/bin/python benchmarks/axial_selection.py                # 3 seeds x 3 patients
    .venv/bin/python benchmarks/axial_selection.py --seeds 5 --patients 4
Writes benchmarks/axial_selection.csv (one row per protocol and variant, plus ALL rows).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lumbar.ingest import IngestOptions, NoUsableImages, ingest
from lumbar.ingest.discs import CsvDiscCentres, DiscCentre, LocaliserSource, SagittalSeries
from lumbar.ingest.index import uid_hash
from lumbar.ingest.read import read_header
from lumbar.ingest.select import AxialSelection, Frame, FrameOrder, select_axial_images
from lumbar.pseudonym import load_secret, pseudonymize
from lumbar.synth import DISCS_CSV, synthesize_cohort
from lumbar.synth.protocols import CONCRETE_PROTOCOLS

HERE = Path(__file__).resolve().parent
NOISE_MM = (0.5, 1.0, 2.0)


class NoisyCentres:
    """True centres plus N(0, sigma) mm per axis, the same draw for a study every time."""

    def __init__(self, truth: CsvDiscCentres, sigma: float) -> None:
        self.truth, self.sigma = truth, sigma

    def __call__(self, series: SagittalSeries) -> list[DiscCentre]:
        key = hashlib.sha256(f"{series.study_uid}:{self.sigma}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
        return [
            DiscCentre(c.level, c.xyz_mm + rng.normal(0, self.sigma, 3), c.confidence)
            for c in self.truth(series)
        ]


@dataclass
class Tally:
    discs: int = 0  # discs in discs.csv
    covered: int = 0  # discs some axial slice crosses (the truth has an image)
    correct: int = 0
    wrong: int = 0  # an image chosen that is not the true one (incl. for an uncovered disc)
    left_out: int = 0  # covered discs without an image
    eq2: int = 0
    eq2_correct: int = 0

    def add(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _variants(discs_csv: Path, localiser: LocaliserSource) -> dict[str, IngestOptions]:
    truth = CsvDiscCentres(discs_csv)
    variants = {
        "auto, true centres": IngestOptions(workers=1, disc_centres=truth),
        "geometry, true centres": IngestOptions(
            workers=1, disc_centres=truth, axial_selection=AxialSelection.GEOMETRY
        ),
    }
    variants["auto, localiser centres"] = IngestOptions(workers=1, disc_centres=localiser)
    for sigma in NOISE_MM:
        variants[f"auto, centres +-{sigma:g} mm"] = IngestOptions(
            workers=1, disc_centres=NoisyCentres(truth, sigma)
        )
    variants["auto, no centres"] = IngestOptions(workers=1)
    variants["paper (Eq. 2)"] = IngestOptions(workers=1, axial_selection=AxialSelection.PAPER)
    return variants


def _score(cohort: Path, out: Path, options: IngestOptions) -> Tally:
    with open(cohort / DISCS_CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        selected = ingest(cohort, out, options).selected
    except NoUsableImages as err:
        selected = err.summary.selected
    secret = load_secret(out)
    chosen = {
        (image.patient_id, image.level): (image.source_uid_hash, image.selection_rule)
        for image in selected
        if image.view == "axial_t2"
    }
    tally = Tally()
    for row in rows:
        uid = row["axial_sop_uid"]
        tally.discs += 1
        tally.covered += bool(uid)
        pick = chosen.get((pseudonymize(row["patient_id"], secret), row["level"]))
        if pick is None:
            tally.left_out += bool(uid)
            continue
        right = bool(uid) and pick[0] == uid_hash(uid)
        tally.correct += right
        tally.wrong += not right
        if pick[1] == "eq2":
            tally.eq2 += 1
            tally.eq2_correct += right
    return tally


def _study_timing(cohort: Path, localiser: LocaliserSource) -> list[tuple[float, float, float]]:
    """(header reading s, localising s, selection s) of each study: all headers read, the
    sagittal T2 series localised (NaN without one), the axial T2 images chosen (true centres)."""
    truth = CsvDiscCentres(cohort / DISCS_CSV)
    timings = []
    for patient in sorted(cohort.glob("patient-*")):
        start = time.perf_counter()
        records = [(p, read_header(p)) for p in sorted(patient.glob("SE*/IM*"))]
        read_s = time.perf_counter() - start
        axial = [r for _, r in records if "T2 AX" in r.series_description]
        sagittal = tuple(p for p, r in records if "T2 SAG" in r.series_description)
        if not axial:
            continue
        localise_s = float("nan")
        if sagittal:
            start = time.perf_counter()
            localiser(SagittalSeries(axial[0].study_uid, "", sagittal))
            localise_s = time.perf_counter() - start
        frames = [
            Frame(r.sop_uid, 0, r.instance_number, g.position, g.orientation, g.spacing,
                  (r.rows, r.columns))
            for r in axial
            for g in r.frames
        ]  # fmt: skip
        series = len({r.series_uid for r in axial})
        start = time.perf_counter()
        centres = truth(SagittalSeries(axial[0].study_uid, ""))
        select_axial_images(frames, FrameOrder.INSTANCE, AxialSelection.AUTO, centres, "", series)
        timings.append((read_s, localise_s, time.perf_counter() - start))
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--patients", type=int, default=3, help="patients per protocol and seed")
    parser.add_argument("--csv", type=Path, default=HERE / "axial_selection.csv")
    args = parser.parse_args()
    tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
    timings: list[tuple[float, float, float]] = []
    localiser = LocaliserSource()  # the bundled model, loaded once for the whole run
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="axial-selection-") as tmp:
        for seed in range(args.seeds):
            for protocol in CONCRETE_PROTOCOLS:
                cohort = Path(tmp) / f"{protocol.value}-{seed}"
                synthesize_cohort(
                    cohort,
                    patients=args.patients,
                    seed=100 + seed,
                    workers=1,
                    progress=False,
                    protocol=protocol,
                )
                for name, options in _variants(cohort / DISCS_CSV, localiser).items():
                    out = Path(tmp) / f"out-{protocol.value}-{seed}"  # reused: index cached
                    tally = _score(cohort, out, options)
                    tallies[(protocol.value, name)].add(tally)
                    tallies[("ALL", name)].add(tally)
                timings.extend(_study_timing(cohort, localiser))
    columns = (
        "protocol", "variant", "discs", "covered", "correct", "correct_pct", "wrong",
        "left_out", "eq2_used", "eq2_correct",
    )  # fmt: skip
    rows = []
    for (protocol, name), t in sorted(tallies.items(), key=lambda kv: (kv[0][0] == "ALL", kv[0])):
        pct = 100.0 * t.correct / t.covered if t.covered else float("nan")
        rows.append(
            (protocol, name, t.discs, t.covered, t.correct, f"{pct:.1f}", t.wrong, t.left_out,
             t.eq2, t.eq2_correct)
        )  # fmt: skip
    width = max(len(r[1]) for r in rows)
    print(
        f"axial selection on the phantom: {args.seeds} seeds x {args.patients} patients x "
        f"{len(CONCRETE_PROTOCOLS)} protocols ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"{datetime.now(UTC):%Y-%m-%d})"
    )
    print(
        f"{'protocol':9} {'variant':{width}} discs covered correct   %   wrong left_out eq2 eq2_ok"
    )
    for r in rows:
        print(
            f"{r[0]:9} {r[1]:{width}} {r[2]:5} {r[3]:7} {r[4]:7} {r[5]:>5} {r[6]:5} {r[7]:8} "
            f"{r[8]:3} {r[9]:6}"
        )
    reads = [t[0] for t in timings]
    localises = [t[1] for t in timings if t[1] == t[1]]  # studies with a sagittal T2
    selects = [t[2] for t in timings]
    whole = [t[1] + t[2] for t in timings if t[1] == t[1]]
    print(
        f"one study ({len(timings)} studies, medians): header reading "
        f"{1000 * statistics.median(reads):.0f} ms (all series); localising the sagittal T2 "
        f"{1000 * statistics.median(localises):.0f} ms; axial selection "
        f"{1000 * statistics.median(selects):.2f} ms ({1000 * max(selects):.2f} ms max); "
        f"localise + select {1000 * statistics.median(whole):.0f} ms "
        f"({1000 * max(whole):.0f} ms max); whole run {time.perf_counter() - started:.0f} s"
    )
    with open(args.csv, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
