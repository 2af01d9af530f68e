"""Patient-level stratified splits (train/val/test, default 75/15/10) and patient-grouped folds.

A patient's images are never divided between splits: images of one patient are correlated
(same scanner, same anatomy), so a split that divides them leaks test information into
training. Within that constraint the split is stratified on a training target: each split gets
close to its share of every class, including rare ones (the paper's 12 herniated discs).

The algorithm is a seeded greedy assignment in the spirit of scikit-learn's
`StratifiedGroupKFold`, generalised to unequal shares: patients holding the rarest classes are
placed first, each into the split where it least increases the chi-square distance between the
splits' class counts and their targets (every class weighted equally, plus the split's size).
Patients without a label for the target are then spread by image count alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lumbar.data.manifest import SPLITS, Manifest, read_manifest, write_manifest
from lumbar.data.targets import DEFAULT_TARGET, Target, get_target
from lumbar.errors import UserError

DEFAULT_RATIOS: tuple[float, float, float] = (0.75, 0.15, 0.10)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """Read train/val/test shares written `75/15/10`, `0.75,0.15,0.1` or `80:20:0`.

    Raises:
        UserError: not three non-negative numbers with a positive train share.
    """
    parts = [p for p in re.split(r"[/,:\s]+", text.strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or any(not np.isfinite(v) or v < 0 for v in values) or values[0] <= 0:
        raise UserError(
            f"split ratios {text!r} must be three non-negative numbers train/val/test with "
            "train > 0, e.g. 75/15/10"
        )
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def greedy_group_assignment(
    counts: np.ndarray, shares: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Assign each group (patient) to a bin (split or fold), stratified by class.

    Args:
        counts: (groups, classes) label counts of each group; a column may be all zero.
        shares: the fraction of the data each bin should receive (sums to 1).
        rng: breaks ties between equally rare groups (the seed of the split).

    Returns:
        (groups,) bin index of each group.
    """
    counts = np.asarray(counts, dtype=np.float64)
    shares_arr = np.asarray(shares, dtype=np.float64)
    n_groups = counts.shape[0]
    if n_groups == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = counts.sum(axis=1, keepdims=True)
    features = np.concatenate([counts, sizes], axis=1)
    totals = features.sum(axis=0)
    keep = totals > 0
    features = features[:, keep] / totals[keep]  # each class (and the size) weighted equally
    target = shares_arr[:, None] * features.sum(axis=0)[None, :]
    current = np.zeros_like(target)
    # Rarest first: a patient with 1 of 12 herniations outranks one with 5 of 545 normal discs.
    rarity = features[:, :-1].max(axis=1) if features.shape[1] > 1 else features[:, 0]
    order = rng.permutation(n_groups)
    order = order[np.argsort(-rarity[order], kind="stable")]
    blocked = shares_arr <= 0
    safe_target = np.where(target > 0, target, 1.0)
    assignment = np.empty(n_groups, dtype=np.int64)
    for g in order:
        f = features[g]
        # Increase of the chi-square distance sum((current - target)^2 / target) if g joins a
        # bin: relative errors, so a 10% bin's needs weigh as much as a 75% bin's.
        cost = (f * (2.0 * (current - target) + f) / safe_target).sum(axis=1)
        cost[blocked] = np.inf
        best = int(np.argmin(cost))
        assignment[g] = best
        current[best] += f
    # Tiny cohorts: no bin with a positive share may stay empty while another holds several
    # groups; move the smallest group of the fullest bin into it.
    for empty in np.flatnonzero(~blocked):
        if (assignment == empty).any():
            continue
        per_bin = np.bincount(assignment, minlength=len(shares_arr))
        donor = int(np.argmax(per_bin))
        if per_bin[donor] < 2:
            break
        members = np.flatnonzero(assignment == donor)
        assignment[members[np.argmin(sizes[members, 0])]] = empty
    return assignment


def _patient_groups(
    manifest: Manifest, target: Target, rows: Sequence[int]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Patients among `rows` (first-seen order), their class counts and unlabelled row counts."""
    labels = target.encode(manifest.grades(target.column))
    patients = manifest.patients()
    index: dict[str, int] = {}
    for i in rows:
        index.setdefault(patients[i], len(index))
    counts = np.zeros((len(index), target.num_classes), dtype=np.int64)
    unlabelled = np.zeros(len(index), dtype=np.int64)
    for i in rows:
        g = index[patients[i]]
        if labels[i] >= 0:
            counts[g, labels[i]] += 1
        else:
            unlabelled[g] += 1
    return list(index), counts, unlabelled


def _assign(
    counts: np.ndarray, unlabelled: np.ndarray, shares: Sequence[float], seed: int, salt: str
) -> np.ndarray:
    rng = np.random.default_rng(seed_sequence(seed, salt))
    labelled = counts.sum(axis=1) > 0
    assignment = np.empty(len(counts), dtype=np.int64)
    assignment[labelled] = greedy_group_assignment(counts[labelled], shares, rng)
    rest = ~labelled
    assignment[rest] = greedy_group_assignment(unlabelled[rest, None], shares, rng)
    return assignment


def seed_sequence(seed: int, salt: str) -> list[int]:
    digest = hashlib.sha256(salt.encode("utf-8")).digest()
    return [int(seed), int.from_bytes(digest[:4], "little")]


def assign_splits(
    manifest: Manifest,
    target: Target,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
) -> list[str]:
    """The split name of every row: patient-level, stratified on `target`, seeded."""
    rows = list(range(len(manifest)))
    patients, counts, unlabelled = _patient_groups(manifest, target, rows)
    assignment = _assign(counts, unlabelled, ratios, seed, "split")
    by_patient = {p: SPLITS[a] for p, a in zip(patients, assignment, strict=True)}
    return [by_patient[p] for p in manifest.patients()]


def assign_folds(
    manifest: Manifest,
    target: Target,
    folds: int,
    seed: int = 0,
    splits: Sequence[str] | None = None,
) -> list[str]:
    """A patient-grouped, stratified fold number ("0".."k-1") for every row outside test.

    Test rows (per `splits`, when given) get no fold: cross-validation runs on train+val and the
    test split stays held out.
    """
    if folds < 2:
        raise UserError(f"folds must be at least 2, got {folds}", option="folds")
    rows = [i for i in range(len(manifest)) if splits is None or splits[i] != "test"]
    patients, counts, unlabelled = _patient_groups(manifest, target, rows)
    if len(patients) < folds:
        raise UserError(f"{len(patients)} patients outside test cannot make {folds} folds")
    assignment = _assign(counts, unlabelled, [1.0 / folds] * folds, seed, "fold")
    by_patient = {p: str(a) for p, a in zip(patients, assignment, strict=True)}
    ids = manifest.patients()
    inside = set(rows)
    return [by_patient[ids[i]] if i in inside else "" for i in range(len(manifest))]


def check_target_classes(manifest: Manifest, target: Target) -> list[str]:
    """Check that the train split holds at least two classes of `target`; return warnings.

    Raises:
        UserError: the target has labels but only one class among the train rows.

    Returns:
        Warnings for val/test splits that miss a class present in train.
    """
    labels = target.encode(manifest.grades(target.column))
    splits = manifest.column("split")
    per_split: dict[str, Counter[int]] = defaultdict(Counter)
    for label, split in zip(labels, splits, strict=True):
        if label >= 0:
            per_split[split][int(label)] += 1
    if not any(per_split.values()):
        return [f"no row has a {target.column} grade: the split is by image count only"]
    train = per_split.get("train", Counter())
    if len(train) < 2:
        rows = [
            i
            for i, (lab, s) in enumerate(zip(labels, splits, strict=True))
            if s == "train" and lab >= 0
        ]
        if not train:
            raise manifest.error(
                range(len(manifest)),
                f"no row of the train split has a {target.column} grade (target {target.name}); "
                "too few patients for these split ratios?",
            )
        only = target.class_names[next(iter(train))]
        raise manifest.error(
            rows,
            f"target {target.name} has a single class ({only}) in the train split; "
            "a classifier cannot learn from it",
        )
    warnings = []
    for split in SPLITS[1:]:
        present = per_split.get(split, Counter())
        absent = [target.class_names[c] for c in sorted(train) if c not in present]
        if present and absent:
            warnings.append(f"{split} split has no {target.name} rows of class {', '.join(absent)}")
        elif not present and any(s == split for s in splits):
            warnings.append(f"{split} split has no rows labelled for {target.name}")
    return warnings


@dataclass
class SplitSummary:
    """What `split_manifest` did: sizes per split (rows, patients) and warnings."""

    path: Path
    rows: dict[str, int]
    patients: dict[str, int]
    folds: int
    warnings: list[str] = field(default_factory=list)
    classes: dict[str, dict[str, int]] = field(default_factory=dict)


def apply_split(
    manifest: Manifest,
    *,
    target: str = DEFAULT_TARGET,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    folds: int = 0,
) -> tuple[Manifest, list[str]]:
    """Return `manifest` with a fresh `split` column (and `fold` column when `folds` > 0).

    Raises:
        UserError: bad arguments, or a target left with a single class in train.
    """
    chosen = get_target(target)
    if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6 or ratios[0] <= 0:
        raise UserError(f"split ratios must be three shares summing to 1, got {list(ratios)}")
    splits = assign_splits(manifest, chosen, ratios, seed)
    result = manifest.with_column("split", splits)
    if folds:
        result = result.with_column("fold", assign_folds(result, chosen, folds, seed, splits))
    elif result.has_column("fold"):
        result = result.without_column("fold")
    warnings = check_target_classes(result, chosen)
    return result, warnings


def split_manifest(
    path: Path,
    *,
    out: Path | None = None,
    target: str = DEFAULT_TARGET,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    folds: int = 0,
) -> SplitSummary:
    """Add or redo the `split` (and `fold`) column of the manifest at `path`; write atomically.

    The existing split column, if any, is ignored (it is being replaced), so a manifest whose
    old split divides a patient can be repaired with this.
    """
    manifest = read_manifest(path, check_splits=False)
    result, warnings = apply_split(manifest, target=target, ratios=ratios, seed=seed, folds=folds)
    written = write_manifest(result, out)
    rows, patients = split_sizes(result)
    return SplitSummary(
        path=written,
        rows=rows,
        patients=patients,
        folds=folds,
        warnings=warnings,
        classes=class_counts_by_split(result, get_target(target)),
    )


def class_counts_by_split(manifest: Manifest, target: Target) -> dict[str, dict[str, int]]:
    """Rows of each class of `target` per split (unlabelled rows not counted)."""
    labels = target.encode(manifest.grades(target.column))
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    for label, split in zip(labels, manifest.column("split"), strict=True):
        if label >= 0:
            counts[split][int(label)] += 1
    return {
        split: {name: counts[split][c] for c, name in enumerate(target.class_names)}
        for split in split_sizes(manifest)[0]
    }


def split_sizes(manifest: Manifest) -> tuple[dict[str, int], dict[str, int]]:
    """Rows and distinct patients per split, in train/val/test order."""
    rows: Counter[str] = Counter(manifest.column("split"))
    patients: dict[str, set[str]] = defaultdict(set)
    for row in manifest.rows:
        patients[row.get("split", "")].add(row["patient_id"])
    names = [s for s in SPLITS if s in rows] + sorted(s for s in rows if s not in SPLITS)
    return {s: rows[s] for s in names}, {s: len(patients[s]) for s in names}


def split_fingerprint(manifest: Manifest) -> str:
    """A short hash of the (patient, split) pairs: records which split a run used."""
    pairs = sorted({(r["patient_id"], r.get("split", "")) for r in manifest.rows})
    return hashlib.sha256(json.dumps(pairs).encode("utf-8")).hexdigest()[:16]
