"""Phantom cohorts of every scanner protocol (`lumbar.synth.protocols`), one patient each."""

from __future__ import annotations

import csv
from pathlib import Path

from lumbar.synth import DISCS_CSV, synthesize_cohort
from lumbar.synth.protocols import CONCRETE_PROTOCOLS, Protocol

PROTOCOL_SEED = 5


def write_protocol_cohorts(root: Path, patients: int = 1) -> dict[Protocol, Path]:
    """One cohort folder per concrete protocol under `root`; returns them by protocol."""
    folders = {}
    for protocol in CONCRETE_PROTOCOLS:
        out = root / protocol.value
        synthesize_cohort(
            out,
            patients=patients,
            seed=PROTOCOL_SEED,
            workers=1,
            progress=False,
            protocol=protocol,
        )
        folders[protocol] = out
    return folders


def read_discs(cohort: Path) -> list[dict[str, str]]:
    """The rows of a cohort's discs.csv."""
    with open(cohort / DISCS_CSV, newline="") as handle:
        return list(csv.DictReader(handle))
