"""`lumbar dataset stats`: Table 5, stenosis counts, split sizes, and the charts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PIL import Image

from lumbar.data.manifest import Manifest, read_manifest
from lumbar.data.stats import compute_stats, format_table5, write_stats

from .conftest import run_cli


def test_table5_and_stenosis_counts() -> None:
    rows = []
    # level, disc_state, scs, split, view
    spec = [
        ("L4-L5", "2", "1", "train", "axial_t2"),
        ("L4-L5", "3", "3", "train", "axial_t2"),
        ("L4-L5", "0", "0", "val", "axial_t2"),
        ("L5S1", "1", "", "test", "axial_t2"),
        ("", "", "", "train", "sagittal_t2"),
        ("", "", "", "train", "myelo"),
    ]
    for i, (level, state, scs, split, view) in enumerate(spec):
        rows.append(
            {
                "image": f"{i}.png",
                "patient_id": f"P{i // 2}",
                "level": level,
                "disc_state": state,
                "scs": scs,
                "split": split,
                "view": view,
            }
        )
    manifest = Manifest(
        Path("m.csv"),
        ("image", "patient_id", "level", "disc_state", "scs", "split", "view"),
        tuple(rows),
    )
    stats = compute_stats(manifest)
    assert stats.views == {"axial_t2": 4, "sagittal_t2": 1, "myelo": 1}
    assert stats.disc_state_by_level["L4-L5"] == {
        "normal": 1,
        "degeneration": 0,
        "bulge": 1,
        "herniation": 1,
    }
    # "L5S1" is not canonicalised here (no read_manifest), so it stays its own row
    assert stats.disc_state_by_level["Total"]["degeneration"] == 1
    assert stats.grades["scs"] == {
        "normal": 1,
        "mild": 1,
        "moderate": 0,
        "severe": 1,
        "unlabelled": 3,
    }
    assert stats.splits["train"]["images"] == 4 and stats.splits["train"]["abnormal"] == 2
    assert stats.splits["test"]["patients"] == 1
    assert "Herniation" in format_table5(stats)


def test_write_stats_tables_and_charts(small_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "stats"
    stats = write_stats(small_manifest, out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "fig3_images_by_view.png",
            "fig4_disc_state.png",
            "fig5_disc_state_by_level.png",
            "fig9_splits.png",
            "fig_stenosis.png",
            "images_by_view.csv",
            "splits.csv",
            "stats.json",
            "stenosis_by_grade.csv",
            "table5_disc_state_by_level.csv",
        ]
    )
    for png in out.glob("*.png"):
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 400
    with open(out / "table5_disc_state_by_level.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["level"] for r in table] == ["L3-L4", "L4-L5", "L5-S1", "Total"]
    manifest = read_manifest(small_manifest)
    states = manifest.grades("disc_state")
    total = table[-1]
    assert int(total["normal"]) == int((states == 0).sum())
    assert sum(int(total[k]) for k in ("normal", "degeneration", "bulge", "herniation")) == 12
    assert json.loads((out / "stats.json").read_text())["images"] == stats.images == 12
    with open(out / "stenosis_by_grade.csv", newline="") as handle:
        stenosis = {r["field"]: r for r in csv.DictReader(handle)}
    assert stenosis["scs"]["normal"] == "4" and stenosis["rfs"]["unlabelled"] == "12"


def test_cli_stats(small_manifest: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    code, out, err = run_cli(
        ["dataset", "stats", small_manifest, "--out", tmp_path / "s"], monkeypatch, capsys
    )
    assert code == 0, err
    assert "Normal" in out and "Total" in out
