"""Explaining a run's images into a folder (`lumbar.explain.run`): overlays, compare grid,
lesion boxes, and runs this version cannot load."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers.tiny_run import make_tiny_run, write_images
from PIL import Image

from lumbar.errors import UserError
from lumbar.explain import ExplainItem, explain_run, load_run


def test_explain_run_with_compare_and_lesions(tmp_path: Path) -> None:
    run_a = make_tiny_run(tmp_path / "a", "mobilenet_v2", seed=0)
    run_b = make_tiny_run(tmp_path / "b", "efficientnet_lite0", seed=1, roi="center:0.8")
    paths = write_images(tmp_path / "img", 2)
    items = [ExplainItem(p, p.stem, target=1, box=(10, 10, 40, 40)) for p in paths]
    summary = explain_run(run_a, items, tmp_path / "out", compare=[run_b])
    assert set(summary["runs"]) == {"a", "b"}
    game = summary["runs"]["a"]["pointing_game"]
    assert game["lesions"] == 2 and 0 <= game["hit_rate"] <= 1
    assert game["random_baseline"] == pytest.approx(900 / (96 * 80), abs=1e-4)
    # run b crops the centre 80%: boxes are scored on the 77x64 crop it displays
    assert summary["runs"]["b"]["pointing_game"]["random_baseline"] == pytest.approx(
        900 / (77 * 64), abs=1e-4
    )
    for run in ("a", "b"):
        for p in paths:
            with Image.open(tmp_path / "out" / run / f"{p.stem}.png") as im:
                assert im.mode == "RGB"
    with Image.open(tmp_path / "out" / "compare.png") as im:
        assert im.size[0] > im.size[1]  # 3 columns (image, a, b), 2 rows
    with open(tmp_path / "out" / "explanations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["explained_class"] for r in rows} == {"abnormal"}
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["images"] == 2


def test_incompatible_run_folder_is_a_one_line_error(tmp_path: Path) -> None:
    run = make_tiny_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["backbone"] = "vgg7"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError):
        load_run(run)
    run2 = make_tiny_run(tmp_path / "run2")
    (run2 / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError):
        load_run(run2)
