"""The paper's Table 3 grading scheme and the lumbar disc levels, defined once for the package.

Every other module (ingest naming, labeler forms, manifests, training targets) imports these
enums instead of repeating grade numbers, names or file-name codes.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class DiscState(IntEnum):
    """Disc state (Table 3, column "Lumbar Spine Disc State")."""

    NORMAL = 0
    DEGENERATION = 1
    BULGE = 2
    HERNIATION = 3


class Herniation(IntEnum):
    """Herniation type (Table 3); only meaningful when the disc state is HERNIATION."""

    NONE = 0
    NORMAL = 1
    MIGRATION = 2
    SEQUESTRATION = 3


class Stenosis(IntEnum):
    """Stenosis grade shared by spinal canal (SCS) and right/left foraminal (RFS, LFS) stenosis."""

    NORMAL = 0
    MILD = 1
    MODERATE = 2
    SEVERE = 3


class GradeField(StrEnum):
    """The five graded fields of one disc level, in Table 4's column order."""

    DISC_STATE = "disc_state"
    HERNIATION = "herniation"
    SCS = "scs"
    RFS = "rfs"
    LFS = "lfs"

    @property
    def scale(self) -> type[IntEnum]:
        """The enum whose members are this field's grades."""
        return _FIELD_SCALES[self]

    @property
    def title(self) -> str:
        """Human-readable name, as in the paper."""
        return _FIELD_TITLES[self]


_FIELD_SCALES: dict[GradeField, type[IntEnum]] = {
    GradeField.DISC_STATE: DiscState,
    GradeField.HERNIATION: Herniation,
    GradeField.SCS: Stenosis,
    GradeField.RFS: Stenosis,
    GradeField.LFS: Stenosis,
}
_FIELD_TITLES: dict[GradeField, str] = {
    GradeField.DISC_STATE: "Disc state",
    GradeField.HERNIATION: "Herniation type",
    GradeField.SCS: "Spinal canal stenosis",
    GradeField.RFS: "Right foraminal stenosis",
    GradeField.LFS: "Left foraminal stenosis",
}

GRADES: tuple[int, ...] = (0, 1, 2, 3)


#: The three stenosis fields (central canal, right and left foramen), in Table 3's order.
STENOSIS_FIELDS: tuple[GradeField, ...] = (GradeField.SCS, GradeField.RFS, GradeField.LFS)


class DiscLevel(StrEnum):
    """A lumbar intervertebral disc level; `code` is the paper's file-name code (Table 2)."""

    L1_L2 = "L1-L2"
    L2_L3 = "L2-L3"
    L3_L4 = "L3-L4"
    L4_L5 = "L4-L5"
    L5_S1 = "L5-S1"

    @property
    def code(self) -> str:
        """The paper's two-digit code used in exported file names: 12, 23, 34, 45, 51."""
        return _LEVEL_CODES[self]

    @property
    def eq2_index(self) -> int:
        """The paper's x in Eq. 2 / Table 1: 1 for L5-S1 up to 5 for L1-L2."""
        return 5 - list(DiscLevel).index(self)

    @classmethod
    def parse(cls, text: str) -> DiscLevel:
        """Read a level written as `L4-L5`, `L4L5`, `l45`, `45` or `L45`.

        Raises:
            ValueError: naming the text and the accepted forms.
        """
        key = text.strip().upper().replace("-", "").replace("_", "").replace(" ", "")
        for level in cls:
            forms = {level.value.replace("-", ""), level.code, "L" + level.code}
            if key in forms:
                return level
        allowed = ", ".join(lv.value for lv in cls)
        raise ValueError(f"unknown disc level {text!r}; expected one of {allowed} or codes 12..51")


_LEVEL_CODES: dict[DiscLevel, str] = {
    DiscLevel.L1_L2: "12",
    DiscLevel.L2_L3: "23",
    DiscLevel.L3_L4: "34",
    DiscLevel.L4_L5: "45",
    DiscLevel.L5_S1: "51",
}

LEVELS: tuple[DiscLevel, ...] = tuple(DiscLevel)

#: Every intervertebral disc a sagittal localiser may see, top to bottom (T9-T10 ... L5-S1).
#: Names are counted upward from L5-S1, the disc above the sacrum; the last five are `LEVELS`.
SPINE_LEVELS: tuple[str, ...] = (
    "T9-T10",
    "T10-T11",
    "T11-T12",
    "T12-L1",
    *(level.value for level in LEVELS),
)


def is_abnormal(disc_state: int) -> bool:
    """The paper's binary grouping: any disc state other than normal is abnormal."""
    return DiscState(disc_state) is not DiscState.NORMAL


def validate_grading(disc_state: int, herniation: int, scs: int, rfs: int, lfs: int) -> None:
    """Check one level's grades against Table 3.

    Raises:
        ValueError: a grade outside 0-3, or a herniation type on a disc that is not herniated.
    """
    for field, value in zip(GradeField, (disc_state, herniation, scs, rfs, lfs), strict=True):
        if value not in GRADES:
            raise ValueError(f"{field.value} grade {value!r} is outside 0-3")
    if herniation != Herniation.NONE and disc_state != DiscState.HERNIATION:
        raise ValueError(
            f"herniation type {Herniation(herniation).name.lower()} given for a disc whose state "
            f"is {DiscState(disc_state).name.lower()}; it applies only to herniated discs"
        )


# --------------------------------------------------------------------------- sagittal targets
# SPIDER's per-disc radiological gradings (van der Graaf et al. 2024) on mid-sagittal slices,
# which the sagittal grader (`lumbar.grader`) predicts beside Table 3's axial scheme above.

#: Pfirrmann's disc degeneration grades, 1 (healthy) to 5 (collapsed).
PFIRRMANN_GRADES: tuple[int, ...] = (1, 2, 3, 4, 5)
#: Pfirrmann grade from which a disc counts as degenerated in `sagittal_abnormal`.
PFIRRMANN_DEGENERATED = 4
#: The binary sagittal findings SPIDER grades 0/1 that the grader predicts.
SAGITTAL_FINDINGS: tuple[str, ...] = ("bulging", "herniation", "narrowing")
#: The sagittal grader's targets, in output order: the headline binary target, Pfirrmann's
#: grade (5 classes) and the binary findings.
SAGITTAL_TARGETS: tuple[str, ...] = ("disc_abnormal", "pfirrmann", *SAGITTAL_FINDINGS)


def sagittal_abnormal(pfirrmann: int, bulging: int, herniation: int) -> bool:
    """A disc is abnormal on a sagittal slice when Pfirrmann >= 4, or it bulges, or herniates.

    Raises:
        ValueError: a Pfirrmann grade outside 1-5.
    """
    if pfirrmann not in PFIRRMANN_GRADES:
        raise ValueError(f"Pfirrmann grade {pfirrmann!r} is outside 1-5")
    return pfirrmann >= PFIRRMANN_DEGENERATED or bool(bulging) or bool(herniation)


def sagittal_targets(grades: dict[str, int]) -> dict[str, int]:
    """The grader's targets of one disc from its gradings (keys as SPIDER names them):
    disc_abnormal 0/1, pfirrmann 1-5, bulging, herniation and narrowing 0/1."""
    abnormal = sagittal_abnormal(grades["pfirrmann"], grades["bulging"], grades["herniation"])
    return {
        "disc_abnormal": int(abnormal),
        "pfirrmann": int(grades["pfirrmann"]),
        **{name: int(bool(grades[name])) for name in SAGITTAL_FINDINGS},
    }
