import subprocess
import sys

from lumbar import __version__


def _run(*code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True, text=True)


def test_help_lists_every_command_with_a_purpose_without_importing_heavy_modules():
    result = _run(
        "import sys",
        "from lumbar.cli import app",
        "from typer.testing import CliRunner",
        "out = CliRunner().invoke(app, ['--help'], terminal_width=200).output",
        "print(out)",
        "heavy = [m for m in ('torch', 'pydicom', 'matplotlib', 'fastapi') if m in sys.modules]",
        "print('HEAVY', heavy)",
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    for command in ("synth", "montage"):
        assert command in result.stdout


def test_version():
    result = subprocess.run(
        [sys.executable, "-m", "lumbar.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == f"lumbar {__version__}"


def test_usage_errors_are_one_line_with_exit_2():
    for args in (["synth"], ["synth", "x", "--patients", "abc"], ["no-such-command"]):
        result = subprocess.run(
            [sys.executable, "-m", "lumbar.cli", *args], capture_output=True, text=True
        )
        assert result.returncode == 2, args
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, args
