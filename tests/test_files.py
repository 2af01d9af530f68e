import os
import stat
from pathlib import Path

import pytest

from lumbar.errors import UserError
from lumbar.files import atomic_path, prepare_output_dir, write_text_atomic


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path: Path):
    target = tmp_path / "a.csv"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    mode = stat.S_IMODE(target.stat().st_mode)
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "a.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_prepare_output_dir(tmp_path: Path):
    prepare_output_dir(tmp_path / "new", force=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        prepare_output_dir(tmp_path / "full", force=False)
    prepare_output_dir(tmp_path / "full", force=True)
    with pytest.raises(UserError, match="not a folder"):
        prepare_output_dir(tmp_path / "full" / "x", force=True)
