import numpy as np

from lumbar.grading import LEVELS, DiscLevel, DiscState, Herniation
from lumbar.synth.cohort import TABLE5_COUNTS, make_patient


def _cohort(n, seed=0):
    return [make_patient(seed, i) for i in range(n)]


def test_same_seed_same_patient_and_independent_of_cohort_size():
    assert make_patient(3, 17) == make_patient(3, 17)
    assert make_patient(3, 17) != make_patient(4, 17)


def test_disc_states_follow_table5_per_level():
    patients = _cohort(1810)  # ten paper-sized cohorts
    for level in LEVELS:
        counts = np.bincount([p.grades[level].disc_state for p in patients], minlength=4) / 10
        expected = np.asarray(TABLE5_COUNTS[level], dtype=float)
        # within 3 standard errors of a binomial on 1810 draws, scaled to 181 patients
        tolerance = 3 * np.sqrt(expected * (1 - expected / 181) / 10) + 1.5
        assert np.all(np.abs(counts - expected) <= tolerance), (level, counts, expected)


def test_lower_levels_mostly_abnormal_and_herniation_rare():
    patients = _cohort(905)
    abnormal = {lv: np.mean([p.grades[lv].disc_state > 0 for p in patients]) for lv in LEVELS}
    assert abnormal[DiscLevel.L4_L5] > 0.7 and abnormal[DiscLevel.L5_S1] > 0.45
    assert abnormal[DiscLevel.L1_L2] < 0.15
    herniated = np.mean([p.grades[lv].disc_state == 3 for p in patients for lv in LEVELS])
    assert 0.005 < herniated < 0.03


def test_stenosis_totals_match_paper_and_herniation_type_only_when_herniated():
    patients = _cohort(1810)
    grades = [p.grades[lv] for p in patients for lv in LEVELS]
    scs = np.bincount([g.scs for g in grades], minlength=4) / 10
    assert np.allclose(scs, [606, 155, 85, 59], atol=25)
    for g in grades:
        herniated = g.disc_state == DiscState.HERNIATION
        assert (g.herniation != Herniation.NONE) == herniated


def test_abnormal_levels_cluster_within_patients():
    patients = _cohort(2000)
    upper = np.array([p.grades[DiscLevel.L2_L3].disc_state > 0 for p in patients])
    lower = np.array([p.grades[DiscLevel.L3_L4].disc_state > 0 for p in patients])
    assert np.corrcoef(upper, lower)[0, 1] > 0.1


def test_identity_is_fake_but_complete():
    ident = make_patient(0, 5).identity
    assert ident.patient_id.startswith("FH") and "^" in ident.name
    assert len(ident.birth_date) == 8 and ident.study_date.startswith("2020")
