"""Export (Table 4, manifest) and import (all or nothing) of gradings
(`lumbar.labeler.exchange`)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lumbar.errors import UserError
from lumbar.labeler.catalog import load_catalog
from lumbar.labeler.exchange import export_manifest, export_table4, import_labels
from lumbar.labeler.store import CONSENSUS

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


def test_export_needs_a_known_format_and_the_images_for_a_manifest(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from lumbar.labeler.exchange import export_gradings

    with pytest.raises(UserError, match="export format must be table4 or manifest") as err:
        export_gradings(store, tmp_path / "x", format="xlsx")
    assert err.value.option == "format"
    with pytest.raises(UserError, match="needs the ingest folder") as err:
        export_gradings(store, tmp_path / "m.csv", format="manifest")
    assert err.value.option == "images"
