"""Inter-rater agreement (`lumbar.labeler.agreement`): weighted kappa per pair, field, level."""

from __future__ import annotations

import pytest

from lumbar.labeler.agreement import agreement_table, weighted_kappa
from lumbar.labeler.store import rater_slot

from .conftest import PATIENTS


def test_weighted_kappa_matches_scikit_learn() -> None:
    from sklearn.metrics import cohen_kappa_score

    a = [0, 1, 2, 3, 3, 2, 1, 0, 2, 2, 1, 3]
    b = [0, 2, 2, 3, 1, 2, 1, 1, 3, 2, 0, 3]
    for weights, sk in (("linear", "linear"), ("quadratic", "quadratic"), ("none", None)):
        expected = cohen_kappa_score(a, b, weights=sk, labels=[0, 1, 2, 3])
        assert weighted_kappa(a, b, weights=weights) == pytest.approx(expected)
    assert weighted_kappa([1, 1], [1, 1]) is None  # undefined: no variation
    assert weighted_kappa([], []) is None
    with pytest.raises(ValueError, match="outside"):
        weighted_kappa([4], [0])


def test_agreement_table_per_pair_field_level(store) -> None:  # type: ignore[no-untyped-def]
    rad1, rad2 = store.user_by_name("rad1"), store.user_by_name("rad2")
    for pid in PATIENTS:
        for i, level in enumerate(("L1-L2", "L4-L5")):
            g = {"disc_state": i + 1, "herniation": 0, "scs": i, "rfs": 0, "lfs": 0}
            store.save_grading(pid, level, rater_slot(rad1.id), g, base_version=0, by=rad1.id)
            g2 = {**g, "scs": 1 - i}
            store.save_grading(pid, level, rater_slot(rad2.id), g2, base_version=0, by=rad2.id)
    rows = {(r.field, r.level): r for r in agreement_table(store)}
    assert rows[("disc_state", "all")].kappa == pytest.approx(1.0)
    assert rows[("scs", "all")].kappa == pytest.approx(-1.0)
    assert rows[("disc_state", "L4-L5")].n == 3
    assert rows[("disc_state", "L4-L5")].kappa is None  # one grade throughout: undefined
