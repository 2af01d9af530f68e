"""The manifest contract: valid files load, every kind of bad input is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumbar.data.manifest import read_manifest, write_manifest
from lumbar.errors import UserError

from .conftest import MANIFEST_HEADER, gradient, listing, read_csv, run_cli, write_csv, write_png


def _rows(path: Path) -> list[list[str]]:
    rows = read_csv(path)
    return [[r[c] for c in MANIFEST_HEADER] for r in rows]


def _rewrite(path: Path, rows: list[list[str]], header=MANIFEST_HEADER) -> Path:
    return write_csv(path, header, rows)


def test_valid_manifest_loads_and_canonicalises(small_manifest: Path) -> None:
    rows = _rows(small_manifest)
    rows[0][2] = "L34"  # paper-style level code
    rows[1][4] = "2.0"  # spreadsheet float
    rows[2][6] = "TRAIN"
    _rewrite(small_manifest, rows)
    manifest = read_manifest(small_manifest)
    assert len(manifest) == 12
    assert manifest.rows[0]["level"] == "L3-L4"
    assert manifest.rows[1]["disc_state"] == "2"
    assert manifest.rows[2]["split"] == "train"
    assert manifest.grades("herniation").tolist() == [-1] * 12  # absent column: unlabelled
    assert manifest.image_path(0).is_file()


def test_extra_columns_survive_a_round_trip(small_manifest: Path, tmp_path: Path) -> None:
    rows = read_csv(small_manifest)
    header = [*MANIFEST_HEADER, "scanner"]
    write_csv(small_manifest, header, [[*(r[c] for c in MANIFEST_HEADER), "1.5T"] for r in rows])
    manifest = read_manifest(small_manifest)
    out = tmp_path / "elsewhere" / "copy.csv"
    out.parent.mkdir()
    write_manifest(manifest, out)
    copied = read_manifest(out)  # image paths were rewritten relative to the new folder
    assert copied.column("scanner") == ["1.5T"] * 12
    assert copied.rows[0]["image"] == "../images/p0_0.png"


def test_other_levels_are_allowed(small_manifest: Path) -> None:
    rows = _rows(small_manifest)
    rows[0][2] = "T12-L1"
    _rewrite(small_manifest, rows)
    assert read_manifest(small_manifest).rows[0]["level"] == "T12-L1"


@pytest.mark.parametrize(
    ("edit", "message", "row_numbers"),
    [
        (lambda rows: rows[2].__setitem__(4, "4"), "disc_state must be an integer grade 0-3", "4"),
        (lambda rows: rows[5].__setitem__(5, "-1"), "scs must be an integer grade 0-3", "7"),
        (lambda rows: rows[0].__setitem__(4, "bulge"), "disc_state must be an integer", "2"),
        (lambda rows: rows[3].__setitem__(6, "validation"), "unknown split name", "5"),
        (lambda rows: rows[1].__setitem__(0, rows[0][0]), "duplicate rows", "2, 3"),
        (lambda rows: rows[0].__setitem__(6, "test"), "more than one split", "2, 3, 4"),
        (lambda rows: rows[4].__setitem__(1, ""), "empty patient_id", "6"),
        (lambda rows: rows[7].__setitem__(0, "images/nope.png"), "image file not found", "9"),
    ],
)
def test_bad_rows_name_file_and_rows(
    small_manifest: Path, edit, message: str, row_numbers: str
) -> None:
    rows = _rows(small_manifest)
    edit(rows)
    _rewrite(small_manifest, rows)
    with pytest.raises(UserError) as caught:
        read_manifest(small_manifest)
    text = str(caught.value)
    assert "\n" not in text
    assert str(small_manifest) in text
    assert message in text
    assert f"row{'s' if ',' in row_numbers else ''} {row_numbers}:" in text


def test_unreadable_image(small_manifest: Path) -> None:
    (small_manifest.parent / "images" / "p1_2.png").write_bytes(b"not a png at all")
    with pytest.raises(UserError, match=r"row 7: image file is not a readable"):
        read_manifest(small_manifest)


def test_missing_required_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ("image", "level"), [("a.png", "L4-L5")])
    with pytest.raises(UserError, match=r"m.csv: missing required column patient_id"):
        read_manifest(path)


def test_long_row_lists_are_shortened(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", gradient())
    path = write_csv(
        tmp_path / "m.csv",
        ("image", "patient_id", "scs"),
        [("a.png", f"P{i}", 9) for i in range(1)],
    )
    rows = [(f"x{i}.png", f"P{i}", 7) for i in range(20)]
    write_csv(path, ("image", "patient_id", "scs"), rows)
    with pytest.raises(UserError, match=r"rows 2, 3, 4, 5, 6, 7, 8, 9 and 12 more: scs"):
        read_manifest(path)


def test_patient_ids_never_appear_in_errors(small_manifest: Path) -> None:
    rows = _rows(small_manifest)
    rows[0][6] = "test"
    _rewrite(small_manifest, rows)
    with pytest.raises(UserError) as caught:
        read_manifest(small_manifest)
    assert "P000" not in str(caught.value)


def test_cli_bad_manifest_exits_2_and_writes_nothing(
    small_manifest: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    rows = _rows(small_manifest)
    rows[3][4] = "7"
    _rewrite(small_manifest, rows)
    before = listing(tmp_path)
    for args in (
        ["dataset", "stats", small_manifest, "--out", tmp_path / "stats"],
        ["dataset", "split", small_manifest],
        ["roi", small_manifest, "--out", tmp_path / "roi"],
    ):
        code, out, err = run_cli(args, monkeypatch, capsys)
        assert code == 2, (args, out, err)
        assert err.count("\n") == 1 and "row 5: disc_state" in err
        assert listing(tmp_path) == before


def test_header_only_manifest(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ("image", "patient_id"), [])
    with pytest.raises(UserError, match=r"m\.csv: no image rows"):
        read_manifest(path)
