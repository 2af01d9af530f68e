"""`lumbar grader train`: the command's wiring and its
one-line refusal of a folder that is not the SPIDER set (the training itself is covered by
tests/grader and reproduced by benchmarks/grader.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumbar.cli", "grader", *args],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_not_a_spider_folder_is_one_line(tmp_path: Path) -> None:
    done = _run("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path} is not a spider-sagittal folder (discs.csv and series.csv)"
    ]
    assert not (tmp_path / "run").exists()


def test_grader_train_help_names_its_options() -> None:
    done = _run("train", "--help")
    assert done.returncode == 0 and "--data" in done.stdout and "--out" in done.stdout
