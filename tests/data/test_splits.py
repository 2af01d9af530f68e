"""Patient-level stratified splits: no patient in two splits, rare classes spread, seeded."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from lumbar.data.manifest import Manifest, read_manifest
from lumbar.data.splits import (
    apply_split,
    assign_folds,
    assign_splits,
    greedy_group_assignment,
    parse_ratios,
    split_fingerprint,
)
from lumbar.data.targets import get_target
from lumbar.errors import UserError
from lumbar.grading import DiscLevel

from .conftest import read_csv, run_cli

# The paper's Table 5 (normal, degeneration, bulge, herniation per level, 181 patients).
TABLE5 = {
    "L1-L2": (163, 13, 5, 0),
    "L2-L3": (149, 12, 20, 0),
    "L3-L4": (113, 9, 59, 0),
    "L4-L5": (38, 6, 129, 8),
    "L5-S1": (82, 10, 85, 4),
}


def table5_manifest(seed: int = 0, unlabelled_patients: int = 6) -> Manifest:
    """181 patients x 5 levels with the paper's (skewed) class counts, shuffled per level."""
    rng = np.random.default_rng(seed)
    rows = []
    for level, counts in TABLE5.items():
        states = np.repeat(np.arange(4), counts)
        rng.shuffle(states)
        for p, state in enumerate(states):
            rows.append(
                {
                    "image": f"{p}_{level}.png",
                    "patient_id": f"P{p:03d}",
                    "level": level,
                    "disc_state": str(state),
                }
            )
    for p in range(unlabelled_patients):  # patients with images but no grades at all
        rows.append({"image": f"u{p}.png", "patient_id": f"U{p}", "level": "", "disc_state": ""})
    return Manifest(Path("table5.csv"), ("image", "patient_id", "level", "disc_state"), tuple(rows))


def _split_of_patients(manifest: Manifest, splits: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for patient, split in zip(manifest.patients(), splits, strict=True):
        found[patient].add(split)
    return found


@pytest.mark.parametrize("target", ["disc_abnormal", "disc_state"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_patient_in_two_splits_on_skewed_data(target: str, seed: int) -> None:
    manifest = table5_manifest(seed)
    splits = assign_splits(manifest, get_target(target), seed=seed)
    per_patient = _split_of_patients(manifest, splits)
    assert all(len(s) == 1 for s in per_patient.values())
    assert len(per_patient) == 181 + 6


def test_split_sizes_and_strata_follow_75_15_10() -> None:
    manifest = table5_manifest()
    target = get_target("disc_state")
    splits = assign_splits(manifest, target, seed=0)
    labels = manifest.grades("disc_state")
    labelled = labels >= 0
    sizes = Counter(s for s, ok in zip(splits, labelled, strict=True) if ok)
    total = labelled.sum()
    for name, share in (("train", 0.75), ("val", 0.15), ("test", 0.10)):
        assert abs(sizes[name] / total - share) < 0.02, sizes
    for cls, count in enumerate((545, 50, 298, 12)):
        per_split = Counter(s for s, y in zip(splits, labels, strict=True) if y == cls)
        assert sum(per_split.values()) == count
        for name, share in (("train", 0.75), ("val", 0.15), ("test", 0.10)):
            # within 2 images or 4 percentage points of the share (patients are indivisible)
            assert abs(per_split[name] - share * count) <= max(2, 0.04 * count), (cls, per_split)
    herniated = Counter(s for s, y in zip(splits, labels, strict=True) if y == 3)
    assert set(herniated) == {"train", "val", "test"}  # the 12 rare discs reach every split
    unlabelled = Counter(s for s, y in zip(splits, labels, strict=True) if y < 0)
    assert unlabelled["train"] >= 3  # unlabelled-only patients are spread too


def test_split_is_seeded() -> None:
    manifest = table5_manifest()
    target = get_target("disc_abnormal")
    first = assign_splits(manifest, target, seed=5)
    assert assign_splits(manifest, target, seed=5) == first
    assert assign_splits(manifest, target, seed=6) != first


def test_greedy_respects_zero_shares() -> None:
    counts = np.array([[3, 0], [0, 2], [1, 1], [2, 2], [5, 0]])
    out = greedy_group_assignment(counts, [0.8, 0.0, 0.2], np.random.default_rng(0))
    assert 1 not in out.tolist()


def test_folds_are_patient_grouped_and_leave_test_out() -> None:
    manifest = table5_manifest()
    target = get_target("disc_abnormal")
    splits = assign_splits(manifest, target)
    folds = assign_folds(manifest, target, 5, splits=splits)
    assert all(f == "" for f, s in zip(folds, splits, strict=True) if s == "test")
    assert all(f != "" for f, s in zip(folds, splits, strict=True) if s != "test")
    assert all(len(v) == 1 for v in _split_of_patients(manifest, folds).values())
    sizes = Counter(f for f in folds if f)
    assert set(sizes) == {"0", "1", "2", "3", "4"}
    assert max(sizes.values()) - min(sizes.values()) <= 0.1 * max(sizes.values())


def test_single_class_in_train_is_an_error() -> None:
    rows = tuple({"image": f"{i}.png", "patient_id": f"P{i}", "disc_state": "0"} for i in range(10))
    manifest = Manifest(Path("one.csv"), ("image", "patient_id", "disc_state"), rows)
    with pytest.raises(UserError, match=r"one.csv: rows 2, .*single class \(normal\) in the train"):
        apply_split(manifest, target="disc_abnormal")


def test_parse_ratios() -> None:
    assert parse_ratios("75/15/10") == pytest.approx((0.75, 0.15, 0.10))
    assert parse_ratios("0.8,0.2,0") == pytest.approx((0.8, 0.2, 0.0))
    for bad in ("75/25", "a/b/c", "0/50/50", "-1/1/1"):
        with pytest.raises(UserError, match="split ratios"):
            parse_ratios(bad)


def test_fingerprint_changes_with_the_split() -> None:
    manifest = table5_manifest()
    a = manifest.with_column("split", assign_splits(manifest, get_target("disc_abnormal"), seed=1))
    b = manifest.with_column("split", assign_splits(manifest, get_target("disc_abnormal"), seed=2))
    assert split_fingerprint(a) != split_fingerprint(b)


def test_cli_split_redoes_a_leaky_split(small_manifest: Path, monkeypatch, capsys) -> None:
    rows = read_csv(small_manifest)
    rows[0]["split"] = "test"  # patient P000 now in two splits
    from .conftest import MANIFEST_HEADER, write_csv

    write_csv(small_manifest, MANIFEST_HEADER, [[r[c] for c in MANIFEST_HEADER] for r in rows])
    code, out, err = run_cli(
        ["dataset", "split", small_manifest, "--ratios", "50/25/25", "--seed", "3", "--folds", "2"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert "train" in out and "patients" in out
    manifest = read_manifest(small_manifest)  # validates: no patient in two splits or folds
    assert set(manifest.column("split")) <= {"train", "val", "test"}
    assert manifest.has_column("fold")


def test_cli_unknown_target(small_manifest: Path, monkeypatch, capsys) -> None:
    code, _, err = run_cli(
        ["dataset", "split", small_manifest, "--target", "grade"], monkeypatch, capsys
    )
    assert code == 2 and "unknown target 'grade'" in err


def test_levels_cover_table5() -> None:
    assert list(TABLE5) == [lv.value for lv in DiscLevel]


def test_cli_single_class_in_train_exits_2_and_keeps_the_file(
    small_manifest: Path, monkeypatch, capsys
) -> None:
    before = small_manifest.read_bytes()
    code, _, err = run_cli(
        ["dataset", "split", small_manifest, "--target", "rfs_binary"], monkeypatch, capsys
    )
    # rfs is absent: no labels, so the split is by image count only (a warning, not an error)
    assert code == 0 and "split is by image count only" in err
    rows = read_csv(small_manifest)
    from .conftest import MANIFEST_HEADER, write_csv

    for r in rows:
        r["scs"] = "0"  # every graded disc normal
    write_csv(small_manifest, MANIFEST_HEADER, [[r[c] for c in MANIFEST_HEADER] for r in rows])
    before = small_manifest.read_bytes()
    code, _, err = run_cli(
        ["dataset", "split", small_manifest, "--target", "scs_binary"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "single class (normal) in the train split" in err, err
    assert err.count("\n") == 1
    assert small_manifest.read_bytes() == before


def test_tiny_cohorts_fill_every_split() -> None:
    counts = np.array([[5, 0], [4, 1], [5, 0], [3, 2]])
    for shares in ([0.75, 0.15, 0.10], [0.1, 0.8, 0.1]):
        out = greedy_group_assignment(counts, shares, np.random.default_rng(0))
        assert set(out.tolist()) == {0, 1, 2}
