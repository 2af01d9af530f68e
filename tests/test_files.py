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


def test_csv_and_json_writers(tmp_path: Path) -> None:
    from lumbar.files import csv_text, write_csv_atomic, write_json_atomic

    assert csv_text(["a", "b"], [[1, "x,y"], [2, ""]]) == 'a,b\n1,"x,y"\n2,\n'
    write_csv_atomic(tmp_path / "t.csv", [{"a": 1, "b": 2, "extra": 3}], ["a", "b"])
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,2\n"
    write_json_atomic(tmp_path / "t.json", {"p": tmp_path}, default=str)
    assert (tmp_path / "t.json").read_text() == f'{{\n  "p": "{tmp_path}"\n}}\n'
    assert not list(tmp_path.glob(".*.part"))
