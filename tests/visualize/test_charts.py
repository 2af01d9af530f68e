"""Charts: learning curves, confusion matrices and the dataset figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lumbar.data.stats import DatasetStats
from lumbar.errors import UserError
from lumbar.visualize.charts import (
    confusion_matrix,
    contrastive_curve,
    dataset_charts,
    learning_curve,
    mean_learning_curves,
)

HISTORY = [
    {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_accuracy": 0.5 + e / 10,
     "val_accuracy": 0.4 + e / 10, "loss": 2 / e, "contrastive_accuracy": e / 4}
    for e in (1, 2, 3)
]  # fmt: skip


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_each_chart_is_one_png(tmp_path: Path) -> None:
    assert _size(learning_curve(HISTORY, tmp_path / "a" / "curve.png", 2)) == (1000, 400)
    assert _size(contrastive_curve(HISTORY, tmp_path / "ssl.png")) == (1000, 400)
    rows = [("vgg16", [HISTORY, HISTORY[:2]]), ("resnet50", [HISTORY])]
    assert _size(mean_learning_curves(rows, tmp_path / "mean.png", "Table 6"))[0] == 900
    matrix = np.array([[5, 1], [2, 7]])
    confusion_matrix(matrix, ["normal", "abnormal"], tmp_path / "confusion.png", "test")
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    assert not list(tmp_path.rglob(".*.part"))


def test_dataset_charts_follow_the_statistics(tmp_path: Path) -> None:
    grades = {g: 1 for g in ("normal", "mild", "moderate", "severe", "unlabelled")}
    stats = DatasetStats(
        images=8,
        patients=1,
        views={"axial_t2": 5, "sagittal_t2": 1, "myelo": 2},
        disc_state_by_level={},  # no disc states: no Figures 4-5
        grades={"scs": grades, "rfs": grades, "lfs": grades},
        splits={},
    )
    written = dataset_charts(stats, tmp_path)
    assert [p.name for p in written] == ["fig3_images_by_view.png", "fig_stenosis.png"]


def test_dataset_charts_need_something_to_draw(tmp_path: Path) -> None:
    with pytest.raises((UserError, AttributeError, KeyError)):
        dataset_charts(object(), tmp_path)
