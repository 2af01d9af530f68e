"""Inter-rater agreement: Cohen's weighted kappa per Table 3 field and level, per rater pair."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lumbar.errors import UserError
from lumbar.files import csv_text, write_text_atomic
from lumbar.grading import GRADES, LEVELS
from lumbar.labeler.store import CONSENSUS, FIELDS, Store

WEIGHTS = ("linear", "quadratic", "none")
ALL_LEVELS = "all"


def weighted_kappa(a: Sequence[int], b: Sequence[int], *, weights: str = "linear") -> float | None:
    """Cohen's kappa of two raters' grades 0-3, with linear, quadratic or no (nominal) weights.

    Returns None when undefined: no pairs, or both raters gave one and the same grade
    throughout (no disagreement is possible by chance either).

    Raises:
        ValueError: unknown weights, unequal lengths, or a grade outside 0-3.

    Example:
        >>> weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3])
        1.0
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    if len(a) != len(b):
        raise ValueError(f"rater grade lists differ in length ({len(a)} vs {len(b)})")
    k = len(GRADES)
    for value in (*a, *b):
        if value not in GRADES:
            raise ValueError(f"grade {value!r} is outside 0-3")
    n = len(a)
    if n == 0:
        return None
    observed = [[0.0] * k for _ in range(k)]
    for x, y in zip(a, b, strict=True):
        observed[x][y] += 1.0 / n
    row = [sum(observed[i]) for i in range(k)]
    col = [sum(observed[i][j] for i in range(k)) for j in range(k)]

    def weight(i: int, j: int) -> float:
        if weights == "linear":
            return abs(i - j) / (k - 1)
        if weights == "quadratic":
            return (i - j) ** 2 / (k - 1) ** 2
        return float(i != j)

    disagree = sum(weight(i, j) * observed[i][j] for i in range(k) for j in range(k))
    chance = sum(weight(i, j) * row[i] * col[j] for i in range(k) for j in range(k))
    if chance == 0:
        return None
    return 1.0 - disagree / chance


@dataclass(frozen=True)
class AgreementRow:
    """Kappa of one rater pair on one field at one level (or `all` levels pooled)."""

    rater_a: str
    rater_b: str
    field: str
    level: str
    n: int
    kappa: float | None


def agreement_table(
    store: Store, *, weights: str = "linear", include_consensus: bool = False
) -> list[AgreementRow]:
    """Weighted kappa for every pair of raters, field and level, on the discs both graded.

    Raises:
        UserError: unknown kappa weights.
    """
    if weights not in WEIGHTS:
        raise UserError(
            f"kappa weights must be one of {', '.join(WEIGHTS)}, got {weights!r}", option="weights"
        )
    names = store.slot_names()
    grades: dict[str, dict[tuple[str, str], dict[str, int | None]]] = {}
    for g in store.gradings():
        if g.slot == CONSENSUS and not include_consensus:
            continue
        grades.setdefault(g.slot, {})[(g.patient_id, g.level)] = g.grades
    slots = sorted(grades, key=lambda s: names.get(s, s))
    rows: list[AgreementRow] = []
    for sa, sb in itertools.combinations(slots, 2):
        shared = sorted(set(grades[sa]) & set(grades[sb]))
        for field in FIELDS:
            for level in (*[lv.value for lv in LEVELS], ALL_LEVELS):
                pairs = [
                    (grades[sa][key][field], grades[sb][key][field])
                    for key in shared
                    if level in (ALL_LEVELS, key[1])
                ]
                pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
                kappa = weighted_kappa(
                    [int(x) for x, _ in pairs], [int(y) for _, y in pairs], weights=weights
                )
                rows.append(
                    AgreementRow(
                        names.get(sa, sa), names.get(sb, sb), field, level, len(pairs), kappa
                    )
                )
    return rows


def write_agreement_csv(rows: list[AgreementRow], out: Path, weights: str) -> Path:
    """Write the agreement table as CSV (rater_a, rater_b, field, level, n, kappa, weights)."""
    header = ["rater_a", "rater_b", "field", "level", "n", "kappa", "weights"]
    cells = []
    for r in rows:
        kappa = "" if r.kappa is None else f"{r.kappa:.6f}"
        cells.append([r.rater_a, r.rater_b, r.field, r.level, r.n, kappa, weights])
    write_text_atomic(out, csv_text(header, cells))
    return Path(out)
