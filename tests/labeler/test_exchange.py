"""Export (Table 4, manifest), import (all or nothing), agreement (weighted kappa), and the CLI."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from lumbar.errors import UserError
from lumbar.labeler.agreement import agreement_table, weighted_kappa
from lumbar.labeler.catalog import load_catalog
from lumbar.labeler.exchange import export_manifest, export_table4, import_labels
from lumbar.labeler.store import CONSENSUS, rater_slot

from .conftest import PATIENTS

HEADER = "patient_id,level,disc_state,herniation,scs,rfs,lfs\n"


def _write(path: Path, body: str) -> Path:
    path.write_text(HEADER + body)
    return path


def test_import_then_export_table4(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    labels = _write(
        tmp_path / "labels.csv",
        f"{PATIENTS[0]},L4-L5,2,0,2,0,0\n{PATIENTS[0]},51,3,2,3,3,3\n{PATIENTS[1]},L1-L2,0,,0,0,0\n",
    )
    assert import_labels(store, labels, rater="rad1") == 3
    out = tmp_path / "table4"
    assert export_table4(store, out, rater="rad1") == 2
    text = (out / f"{PATIENTS[0]}.csv").read_text().splitlines()
    # the paper's Table 4 layout, rows L12..L51
    assert text[0] == "Disc Name,Disc State,Type Disc Herniation,SCS,RFS,LFS"
    assert text[4] == "L45,2,0,2,0,0"
    assert text[5] == "L51,3,2,3,3,3"
    assert text[1] == "L12,,,,,"
    audit = [a for a, _ in store.audit(patient_id=PATIENTS[0])]
    assert {a.action for a in audit} == {"import"}
    with pytest.raises(UserError, match="not empty"):
        export_table4(store, out, rater="rad1")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"{PATIENTS[0]},L4-L5,4,0,0,0,0\n", "grade 0-3"),
        (f"{PATIENTS[0]},L6-L7,1,0,0,0,0\n", "unknown disc level"),
        (f"{PATIENTS[0]},L4-L5,1,2,0,0,0\n", "herniat"),
        (f"{PATIENTS[0]},L4-L5,1,0,0,0,0\n{PATIENTS[0]},45,1,0,0,0,0\n", "duplicate"),
        ("<script>x</script>,L4-L5,1,0,0,0,0\n", "pseudonym"),
        ("Pnot_in_catalog,L4-L5,1,0,0,0,0\n", "not in the images catalog"),
        (f"{PATIENTS[0]},L4-L5,1' OR 1=1 --,0,0,0,0\n", "grade 0-3"),
    ],
)
def test_bad_import_is_all_or_nothing(
    store, tmp_path: Path, ingest_dir: Path, body: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    good = f"{PATIENTS[1]},L1-L2,0,0,0,0,0\n"
    labels = _write(tmp_path / "labels.csv", good + body)
    patients = set(load_catalog(ingest_dir).patients)
    with pytest.raises(UserError, match=message) as err:
        import_labels(store, labels, rater="rad1", patients=patients)
    assert "nothing imported" in str(err.value) or "line" in str(err.value)
    assert store.gradings() == []  # the good row was not written either


def test_import_refuses_overwrite_unless_replace(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    labels = _write(tmp_path / "a.csv", f"{PATIENTS[0]},L4-L5,1,0,0,0,0\n")
    import_labels(store, labels, rater="rad1")
    changed = _write(tmp_path / "b.csv", f"{PATIENTS[0]},L4-L5,2,0,0,0,0\n")
    with pytest.raises(UserError, match="exist already"):
        import_labels(store, changed, rater="rad1")
    assert import_labels(store, changed, rater="rad1", replace=True) == 1
    row = store.gradings()[0]
    assert row.grades["disc_state"] == 2 and row.version == 2
    with pytest.raises(UserError, match="the adjudicating admin's account") as err:
        import_labels(store, changed, rater=CONSENSUS)
    assert err.value.option == "by"
    with pytest.raises(UserError, match="admin"):
        import_labels(store, changed, rater=CONSENSUS, by="rad2")
    assert import_labels(store, changed, rater=CONSENSUS, by="admin") == 1


def test_manifest_export_follows_design(store, ingest_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    admin = store.user_by_name("admin")
    store.save_grading(
        PATIENTS[0],
        "L4-L5",
        CONSENSUS,
        {"disc_state": 2, "scs": 1, "rfs": 0, "lfs": 0},
        base_version=0,
        by=admin.id,
    )
    out = tmp_path / "ds" / "manifest.csv"
    assert export_manifest(store, load_catalog(ingest_dir), out, rater=None) == 24
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == [
        "image",
        "patient_id",
        "level",
        "view",
        "disc_state",
        "herniation",
        "scs",
        "rfs",
        "lfs",
    ]
    graded = [r for r in rows if r["disc_state"]]
    assert len(graded) == 1 and graded[0]["level"] == "L4-L5" and graded[0]["herniation"] == "0"
    for r in rows:  # paths are relative to the manifest's folder and resolve to the images
        assert (out.parent / r["image"]).resolve().is_file()
    # the dataset builder takes the labels straight from the database
    from lumbar.data.build import _read_labels_db

    grades = _read_labels_db(store.url, set(PATIENTS))
    assert (PATIENTS[0], "L4-L5") in grades


def test_weighted_kappa_matches_scikit_learn() -> None:
    from sklearn.metrics import cohen_kappa_score

    a = [0, 1, 2, 3, 3, 2, 1, 0, 2, 2, 1, 3]
    b = [0, 2, 2, 3, 1, 2, 1, 1, 3, 2, 0, 3]
    for weights, sk in (("linear", "linear"), ("quadratic", "quadratic"), ("none", None)):
        expected = cohen_kappa_score(a, b, weights=sk, labels=[0, 1, 2, 3])
        assert weighted_kappa(a, b, weights=weights) == pytest.approx(expected)
    assert weighted_kappa([1, 1], [1, 1]) is None  # undefined: no variation
    assert weighted_kappa([], []) is None
    with pytest.raises(ValueError, match="outside"):
        weighted_kappa([4], [0])


def test_agreement_table_per_pair_field_level(store) -> None:  # type: ignore[no-untyped-def]
    rad1, rad2 = store.user_by_name("rad1"), store.user_by_name("rad2")
    for pid in PATIENTS:
        for i, level in enumerate(("L1-L2", "L4-L5")):
            g = {"disc_state": i + 1, "herniation": 0, "scs": i, "rfs": 0, "lfs": 0}
            store.save_grading(pid, level, rater_slot(rad1.id), g, base_version=0, by=rad1.id)
            g2 = {**g, "scs": 1 - i}
            store.save_grading(pid, level, rater_slot(rad2.id), g2, base_version=0, by=rad2.id)
    rows = {(r.field, r.level): r for r in agreement_table(store)}
    assert rows[("disc_state", "all")].kappa == pytest.approx(1.0)
    assert rows[("scs", "all")].kappa == pytest.approx(-1.0)
    assert rows[("disc_state", "L4-L5")].n == 3
    assert rows[("disc_state", "L4-L5")].kappa is None  # one grade throughout: undefined


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


def test_export_needs_a_known_format_and_the_images_for_a_manifest(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from lumbar.labeler.exchange import export_gradings

    with pytest.raises(UserError, match="export format must be table4 or manifest") as err:
        export_gradings(store, tmp_path / "x", format="xlsx")
    assert err.value.option == "format"
    with pytest.raises(UserError, match="needs the ingest folder") as err:
        export_gradings(store, tmp_path / "m.csv", format="manifest")
    assert err.value.option == "images"
