"""Training targets (DESIGN.md `--target`): which manifest column a model learns, and its classes.

`disc_abnormal` is the paper's normal vs abnormal disc (positive class = abnormal); `disc_state`,
`herniation`, `scs`, `rfs`, `lfs` are the 4-grade Table 3 fields; `scs_binary`, `rfs_binary`,
`lfs_binary` group a stenosis grade into none vs any. A row whose column is empty has no label
for the target and is left out of its training, never counted as class 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lumbar.errors import UserError
from lumbar.grading import GradeField

UNLABELLED = -1


@dataclass(frozen=True)
class Target:
    """One learnable target: a Table 3 grade column, optionally grouped into grade > 0."""

    name: str
    field: GradeField
    binary: bool

    @property
    def column(self) -> str:
        """The manifest column holding the grade."""
        return self.field.value

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in label order; for binary targets the positive class is index 1."""
        if self.binary:
            negative = self.field.scale(0).name.lower()
            return (negative, "abnormal" if self.field is GradeField.DISC_STATE else "stenosis")
        return tuple(member.name.lower() for member in self.field.scale)

    @property
    def num_classes(self) -> int:
        """2 for binary targets, 4 for the Table 3 grades."""
        return len(self.class_names)

    def encode(self, grades: np.ndarray) -> np.ndarray:
        """Map grades (-1 = unlabelled) to class labels (-1 stays -1)."""
        grades = np.asarray(grades, dtype=np.int64)
        if not self.binary:
            return grades.copy()
        return np.where(grades < 0, UNLABELLED, (grades > 0).astype(np.int64))


TARGETS: dict[str, Target] = {
    "disc_abnormal": Target("disc_abnormal", GradeField.DISC_STATE, binary=True),
    **{field.value: Target(field.value, field, binary=False) for field in GradeField},
    **{
        f"{field.value}_binary": Target(f"{field.value}_binary", field, binary=True)
        for field in (GradeField.SCS, GradeField.RFS, GradeField.LFS)
    },
}

DEFAULT_TARGET = "disc_abnormal"


def get_target(name: str) -> Target:
    """The target called `name`.

    Raises:
        UserError: unknown name; the message lists the known ones.
    """
    try:
        return TARGETS[name]
    except KeyError:
        raise UserError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None
