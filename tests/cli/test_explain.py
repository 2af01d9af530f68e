"""`lumbar explain` (`lumbar.cli.explain`): a run's Grad-CAM on image files."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.tiny_run import make_tiny_run, write_images

from lumbar.errors import UserError


def test_explain_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from typer.testing import CliRunner

    from lumbar.cli import app

    run = make_tiny_run(tmp_path / "run")
    paths = write_images(tmp_path / "img", 2)
    runner = CliRunner()
    result = runner.invoke(
        app, ["explain", str(run), *map(str, paths), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "explained 2 images" in result.output
    assert (tmp_path / "o" / "run" / "img0.png").is_file()
    bad = runner.invoke(
        app, ["explain", str(tmp_path / "img"), str(paths[0]), "--out", str(tmp_path / "x")]
    )
    assert isinstance(bad.exception, UserError) and "not a run folder" in str(bad.exception)
    neither = runner.invoke(app, ["explain", str(run), "--out", str(tmp_path / "y")])
    assert isinstance(neither.exception, UserError)
