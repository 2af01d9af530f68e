"""The SQLite index: resumable, worker-count independent, and free of identifiers."""

from __future__ import annotations

import os
from pathlib import Path

from lumbar.ingest.index import INDEX_FILE, StudyIndex, index_folder
from lumbar.ingest.read import iter_files

SECRET = b"index-secret"


def _build(tmp_path: Path, mr_factory, n: int = 6) -> Path:
    src = tmp_path / "src" / "DOE_JANE_MRN-778899"  # a folder named after the patient
    for i in range(1, n + 1):
        mr_factory(src / f"IM{i}", instance=i, sop_uid=f"1.2.3.4.1.{i}", patient_id="MRN-778899")
    (src / "readme.txt").write_text("hello")
    return tmp_path / "src"


def _index(root: Path, out: Path, workers: int = 1):
    index = StudyIndex.open(out / INDEX_FILE, SECRET)
    stats, _ = index_folder(index, root, iter_files(root), SECRET, workers)
    rows = list(index.db.execute("SELECT * FROM instances ORDER BY sop_uid"))
    problems = index.problems()
    index.close()
    return stats, rows, problems


def test_index_then_resume_skips_unchanged_files(tmp_path: Path, mr_factory) -> None:
    root = _build(tmp_path, mr_factory)
    out = tmp_path / "out"
    out.mkdir()
    stats, rows, problems = _index(root, out)
    assert (stats.files, stats.read, stats.skipped) == (7, 7, 0)
    assert len(rows) == 6
    assert [reason for _, _, reason in problems] == ["not a DICOM file (no DICM prefix)"]
    again, rows2, _ = _index(root, out)
    assert (again.read, again.skipped) == (0, 7)
    assert rows2 == rows


def test_changed_and_removed_files_are_reindexed(tmp_path: Path, mr_factory) -> None:
    root = _build(tmp_path, mr_factory)
    out = tmp_path / "out"
    out.mkdir()
    _index(root, out)
    folder = root / "DOE_JANE_MRN-778899"
    (folder / "IM1").unlink()
    mr_factory(
        folder / "IM2",
        instance=2,
        sop_uid="1.2.3.4.1.2",
        description="T2 SAG TSE NEW",
        patient_id="MRN-778899",
    )
    os.utime(folder / "IM2", ns=(1, 1))
    stats, rows, _ = _index(root, out)
    assert stats.read == 1
    assert [r[0] for r in rows] == [f"1.2.3.4.1.{i}" for i in range(2, 7)]
    assert "T2 SAG TSE" in next(r for r in rows if r[0] == "1.2.3.4.1.2")[4]


def test_duplicates_and_contradictions_are_reported(tmp_path: Path, mr_factory) -> None:
    root = tmp_path / "src"
    mr_factory(root / "a", sop_uid="9.1", patient_id="A")
    mr_factory(root / "b", sop_uid="9.1", patient_id="A")  # same instance twice
    mr_factory(root / "c", sop_uid="9.2", patient_id="B")  # same series, other patient
    out = tmp_path / "out"
    out.mkdir()
    _, rows, problems = _index(root, out)
    reasons = sorted(reason for _, _, reason in problems)
    assert len(rows) == 1
    assert any(r.startswith("duplicate") for r in reasons)
    assert any("contradictory" in r for r in reasons)


def test_parallel_and_serial_indexes_are_identical(tmp_path: Path, mr_factory) -> None:
    root = _build(tmp_path, mr_factory, n=150)  # several chunks
    (tmp_path / "o1").mkdir()
    (tmp_path / "o2").mkdir()
    _, serial, p1 = _index(root, tmp_path / "o1", workers=1)
    _, parallel, p2 = _index(root, tmp_path / "o2", workers=2)
    assert serial == parallel and p1 == p2


def test_index_holds_no_identifiers(tmp_path: Path, mr_factory) -> None:
    root = _build(tmp_path, mr_factory)
    out = tmp_path / "out"
    out.mkdir()
    _index(root, out)
    for path in out.iterdir():
        data = path.read_bytes()
        for text in (b"MRN-778899", b"DOE", b"JANE", b"19700101", b"ACC999"):
            assert text not in data, (path.name, text)


def test_new_secret_empties_the_index(tmp_path: Path, mr_factory) -> None:
    root = _build(tmp_path, mr_factory)
    out = tmp_path / "out"
    out.mkdir()
    _index(root, out)
    index = StudyIndex.open(out / INDEX_FILE, b"another")
    assert index.known_files() == {}
    index.close()


def test_a_duplicate_takes_over_when_the_original_goes(tmp_path: Path, mr_factory) -> None:
    root = tmp_path / "src"
    mr_factory(root / "a", sop_uid="9.1", patient_id="A")
    mr_factory(root / "b", sop_uid="9.1", patient_id="A")
    out = tmp_path / "out"
    out.mkdir()
    _, rows, problems = _index(root, out)
    assert len(rows) == 1 and len(problems) == 1
    (root / "a").unlink()
    _, rows, problems = _index(root, out)
    assert len(rows) == 1 and problems == []


def test_an_older_index_with_free_text_is_deleted_and_the_new_one_is_private(
    tmp_path: Path,
) -> None:
    """An index written before descriptions were cleaned (schema 1) may hold names: it is
    deleted, not emptied (deleted rows linger in SQLite's free pages), and made mode 0600."""
    import sqlite3

    path = tmp_path / INDEX_FILE
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.execute("CREATE TABLE series (series_uid TEXT, description TEXT)")
    db.execute("INSERT INTO series VALUES ('1.2', 'T2 SAG Smith^Johnathan')")
    db.commit()
    db.close()
    path.chmod(0o644)
    index = StudyIndex.open(path, SECRET)
    index.close()
    assert b"Johnathan" not in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
