"""`lumbar models`: the table of backbones, and `--download` errors; `--help` stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lumbar.cli import app, main


def test_models_table_lists_every_backbone(torch_home: Path) -> None:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    for name, params, gflops in [
        ("vgg16 *", "138.36 M", "15.47"),
        ("vgg19 *", "143.67 M", "19.63"),
        ("resnet50 *", "25.56 M", "4.09"),
        ("mobilenet_v2 *", "3.50 M", "0.30"),
        ("efficientnet_lite0", "4.65 M", "0.39"),
    ]:
        line = next(line for line in out.splitlines() if f" {name} " in line)
        assert params in line and gflops in line
        assert "file, run, scratch" in line
        assert ("imagenet (here)" in line) == (name == "efficientnet_lite0")
    assert "vgg16-397923af.pth" in out
    assert str(torch_home) in out.replace("\n", "")


def test_download_of_unknown_backbone_is_one_line_exit_2(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["lumbar", "models", "--download", "vgg61"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "unknown backbone 'vgg61'" in err


@pytest.mark.parametrize("argv", [["--help"], ["models", "--help"]])
def test_help_does_not_import_torch(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from lumbar.cli import app\n"
        f"result = CliRunner().invoke(app, {argv!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_models_lists_the_bundled_localiser(torch_home: Path) -> None:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "disc localiser" in line)
    assert "lumbar localize" in line and "localizer.safetensors" in line and "MB" in line
