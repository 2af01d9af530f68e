"""`lumbar label ...` (`lumbar.cli.label`): accounts, import, export, agreement; one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.ingest_folder import PATIENTS

from lumbar.errors import UserError

HEADER = "patient_id,level,disc_state,herniation,scs,rfs,lfs\n"


def _write(path: Path, body: str) -> Path:
    path.write_text(HEADER + body)
    return path


def _cli(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    """Run `lumbar ARGS` in-process (CliRunner); UserErrors come back as result.exception."""
    from typer.testing import CliRunner

    from lumbar.cli import app

    return CliRunner().invoke(app, list(args), input=stdin)


def test_cli_add_user_import_export_agreement(tmp_path: Path, ingest_dir: Path) -> None:
    db = str(tmp_path / "f.db")
    result = _cli(
        "label", "add-user", "rad1", "--db", db, "--password-stdin", stdin="pw-rad1-xyz\n"
    )
    assert result.exit_code == 0, result.output
    assert "pw-rad1" not in result.output
    result = _cli(
        "label", "add-user", "rad1", "--db", db, "--password-stdin", stdin="pw-rad1-xyz\n"
    )
    assert isinstance(result.exception, UserError) and "exists" in str(result.exception)
    labels = _write(tmp_path / "l.csv", f"{PATIENTS[0]},L4-L5,9,0,0,0,0\n")
    result = _cli("label", "import", str(labels), "--rater", "rad1", "--db", db)
    assert "nothing imported" in str(result.exception)
    labels = _write(tmp_path / "l.csv", f"{PATIENTS[0]},L4-L5,2,0,1,0,0\n")
    result = _cli(
        "label", "import", str(labels), "--rater", "rad1", "--db", db, "--images", str(ingest_dir)
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "m.csv"
    result = _cli(
        "label", "export", "--format", "manifest", "--db", db,
        "--images", str(ingest_dir), "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ",L4-L5,axial_t2,2,0,1,0,0" in out.read_text()
    result = _cli("label", "agreement", "--db", db)
    assert result.exit_code == 0 and "no two raters" in result.output
    result = _cli(
        "label", "export", "--db", str(tmp_path / "typo.db"), "--out", str(tmp_path / "t")
    )
    assert "not found" in str(result.exception)  # a mistyped --db is not created empty
    assert not (tmp_path / "typo.db").exists()


def test_cli_user_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lumbar.cli", "label", "agreement", "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: labeler database") and result.stderr.count("\n") == 1


def test_help_does_not_import_web_or_database_stack() -> None:
    code = (
        "import sys, lumbar.cli\n"
        "heavy = [m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'torch') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]"
