"""`lumbar dataset build`: ingest output + labels -> manifest, through the pseudonym secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lumbar.data.build import build_dataset
from lumbar.data.manifest import read_manifest
from lumbar.errors import UserError
from lumbar.pseudonym import pseudonymize

from .conftest import SECRET, listing, read_csv, run_cli, write_csv

LABEL_HEADER = ("patient_id", "level", "disc_state", "herniation", "scs", "rfs", "lfs")


def test_build_joins_labels_through_the_pseudonym(ingest_out, tmp_path: Path) -> None:
    folder, labels = ingest_out
    summary = build_dataset(folder, str(labels), tmp_path / "ds")
    manifest = read_manifest(summary.manifest)  # the output is itself a valid manifest
    assert (summary.images, summary.patients, summary.labelled_images) == (42, 6, 30)
    text = summary.manifest.read_text()
    assert "ORIG-" not in text  # original ids never reach the output
    assert SECRET not in text
    pseudo = pseudonymize("ORIG-0", SECRET.encode())
    row = next(r for r in manifest.rows if r["patient_id"] == pseudo and r["level"] == "L5-S1")
    assert (row["disc_state"], row["herniation"], row["view"]) == ("3", "2", "axial_t2")
    sagittal = [r for r in manifest.rows if r["view"] == "sagittal_t2"]
    assert len(sagittal) == 6 and all(r["disc_state"] == "" for r in sagittal)
    assert manifest.column("source_uid_hash")[0].startswith("h")  # extra columns are kept
    assert set(manifest.column("split")) <= {"train", "val", "test"}
    assert manifest.image_path(0).is_file()  # paths are relative to the dataset folder
    provenance = json.loads((tmp_path / "ds" / "build.json").read_text())
    assert provenance["split"]["ratios"] == [0.75, 0.15, 0.10]
    assert "ORIG-" not in json.dumps(provenance)


def test_build_accepts_labels_keyed_by_pseudonym(ingest_out, tmp_path: Path) -> None:
    folder, labels = ingest_out
    rows = read_csv(labels)
    for r in rows:
        r["patient_id"] = pseudonymize(r["patient_id"], SECRET.encode())
    keyed = write_csv(tmp_path / "pseudo.csv", LABEL_HEADER, [list(r.values()) for r in rows])
    (folder / ".lumbar-secret").unlink()  # not needed for pseudonymous labels
    summary = build_dataset(folder, str(keyed), tmp_path / "ds", split=False)
    assert summary.labelled_images == 30
    assert not read_manifest(summary.manifest).has_column("split")


def test_wrong_secret_is_explained(ingest_out, tmp_path: Path, monkeypatch) -> None:
    folder, labels = ingest_out
    monkeypatch.setenv("LUMBAR_PSEUDONYM_SECRET", "another-secret")
    with pytest.raises(UserError, match=r"no label matched any image.*secret"):
        build_dataset(folder, str(labels), tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_missing_labeler_database_is_an_error_not_a_new_file(ingest_out, tmp_path: Path) -> None:
    folder, _ = ingest_out
    missing = tmp_path / "typo.db"
    with pytest.raises(UserError, match="not found"):
        build_dataset(folder, f"sqlite:///{missing}", tmp_path / "ds")
    assert not missing.exists() and not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (3, "disc_state", "5", "row 5: disc_state must be an integer grade 0-3"),
        (0, "level", "L6-S1", "row 2: unknown disc level"),
        (1, "patient_id", "", "row 3: empty patient_id or level"),
        (2, "herniation", "1", "row 4: herniation type given for a disc whose state"),
        (1, "level", "L1-L2", "rows 2, 3: duplicate rows"),
    ],
)
def test_bad_labels(ingest_out, tmp_path: Path, row, column, value, message) -> None:
    folder, labels = ingest_out
    rows = read_csv(labels)
    rows[row][column] = value
    write_csv(labels, LABEL_HEADER, [list(r.values()) for r in rows])
    with pytest.raises(UserError, match=message) as caught:
        build_dataset(folder, str(labels), tmp_path / "ds")
    assert str(labels) in str(caught.value)
    assert not (tmp_path / "ds").exists()


def test_bad_images_csv(ingest_out, tmp_path: Path) -> None:
    folder, labels = ingest_out
    (folder / read_csv(folder / "images.csv")[4]["image"]).unlink()
    with pytest.raises(UserError, match=r"images.csv: row 6: image file not found"):
        build_dataset(folder, str(labels), tmp_path / "ds")
    rows = read_csv(folder / "images.csv")
    write_csv(
        folder / "images.csv",
        ("patient_id", "image"),
        [(r["patient_id"], r["image"]) for r in rows],
    )
    with pytest.raises(UserError, match=r"images.csv: missing required column\(s\) view"):
        build_dataset(folder, str(labels), tmp_path / "ds")


def test_cli_build_then_refuses_to_overwrite(
    ingest_out, tmp_path: Path, monkeypatch, capsys
) -> None:
    folder, labels = ingest_out
    args = ["dataset", "build", "--images", folder, "--labels", labels, "--out", tmp_path / "ds"]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert "42 images of 6 patients, 30 labelled (split: train" in out
    before = listing(tmp_path / "ds")
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and "not empty; allow replacing its contents" in err and "(--force)" in err
    assert listing(tmp_path / "ds") == before
    code, _, err = run_cli([*args, "--force", "--ratios", "60/20/20"], monkeypatch, capsys)
    assert code == 0, err
