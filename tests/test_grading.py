import pytest

from lumbar.grading import (
    LEVELS,
    DiscLevel,
    DiscState,
    GradeField,
    Herniation,
    Stenosis,
    is_abnormal,
    validate_grading,
)


def test_table3_grades_and_names():
    assert [s.name for s in DiscState] == ["NORMAL", "DEGENERATION", "BULGE", "HERNIATION"]
    assert [h.name for h in Herniation] == ["NONE", "NORMAL", "MIGRATION", "SEQUESTRATION"]
    assert [s.name for s in Stenosis] == ["NORMAL", "MILD", "MODERATE", "SEVERE"]
    assert [int(s) for s in DiscState] == [0, 1, 2, 3]
    assert [f.value for f in GradeField] == ["disc_state", "herniation", "scs", "rfs", "lfs"]
    assert GradeField.RFS.scale is Stenosis and GradeField.HERNIATION.scale is Herniation


def test_levels_codes_and_eq2_frames():
    assert [lv.value for lv in LEVELS] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert [lv.code for lv in LEVELS] == ["12", "23", "34", "45", "51"]
    # Table 1: x = 1 is L5-S1 ... x = 5 is L1-L2; Eq. 2 gives frames 3, 8, 13, 18, 23
    frames = {lv: 3 * lv.eq2_index + 2 * (lv.eq2_index - 1) for lv in LEVELS}
    assert frames[DiscLevel.L5_S1] == 3 and frames[DiscLevel.L1_L2] == 23
    assert sorted(frames.values()) == [3, 8, 13, 18, 23]


@pytest.mark.parametrize("text", ["L4-L5", "l4l5", "45", "L45", " L4_L5 "])
def test_parse_level_forms(text):
    assert DiscLevel.parse(text) is DiscLevel.L4_L5


def test_parse_level_rejects_unknown():
    with pytest.raises(ValueError, match="unknown disc level 'T12-L1'"):
        DiscLevel.parse("T12-L1")


def test_binary_grouping():
    assert not is_abnormal(0)
    assert all(is_abnormal(s) for s in (1, 2, 3))


def test_validate_grading():
    validate_grading(3, 2, 3, 3, 3)  # Table 4, L51
    with pytest.raises(ValueError, match="scs grade 4 is outside 0-3"):
        validate_grading(0, 0, 4, 0, 0)
    with pytest.raises(ValueError, match="applies only to herniated discs"):
        validate_grading(2, 1, 0, 0, 0)


def test_sagittal_targets_one_definition() -> None:
    from lumbar.grading import SAGITTAL_TARGETS, sagittal_abnormal, sagittal_targets

    assert SAGITTAL_TARGETS == ("disc_abnormal", "pfirrmann", "bulging", "herniation", "narrowing")
    assert not sagittal_abnormal(3, 0, 0) and sagittal_abnormal(4, 0, 0)
    assert sagittal_abnormal(1, 1, 0) and sagittal_abnormal(2, 0, 1)
    with pytest.raises(ValueError, match="outside 1-5"):
        sagittal_abnormal(0, 0, 0)
    grades = {"pfirrmann": 2, "bulging": 0, "herniation": 1, "narrowing": 1, "modic": 2}
    assert sagittal_targets(grades) == {
        "disc_abnormal": 1, "pfirrmann": 2, "bulging": 0, "herniation": 1, "narrowing": 1,
    }  # fmt: skip
