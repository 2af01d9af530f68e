"""End-to-end `lumbar ingest` on phantom studies from `lumbar synth`, with bad input mixed in."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lumbar.errors import UserError
from lumbar.ingest import (
    IMAGES_COLUMNS,
    REPORT_CSV,
    IngestOptions,
    IngestSummary,
    NoUsableImages,
    ingest,
)
from lumbar.ingest.read import iter_files
from lumbar.pseudonym import SECRET_ENV, load_secret, pseudonymize

NAMES = ("_1", "_2", "_3", "_12", "_23", "_34", "_45", "_51")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _copy(src: Path, dst: Path) -> Path:
    """A writable copy of the cohort made of hard links (fast, no extra disk)."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def _identifiers(root: Path) -> set[bytes]:
    import pydicom

    found: set[bytes] = set()
    for path in iter_files(root):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        for keyword in ("PatientID", "PatientName", "PatientBirthDate", "AccessionNumber"):
            value = str(ds.get(keyword, "") or "")
            if value:
                found.add(value.encode())
                found.update(part.encode() for part in value.split("^") if len(part) > 2)
    return found


def _leaks(identifiers: set[bytes], data: bytes) -> list[bytes]:
    """Identifiers found in `data` as whole words (so "ALI" is not found in "LOCALIZER")."""
    return [
        i
        for i in identifiers
        if i in data and re.search(rb"(?<![A-Za-z0-9])" + re.escape(i) + rb"(?![A-Za-z0-9])", data)
    ]


def _tree(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.name.startswith(".lumbar-index")
    }


@pytest.fixture(scope="module")
def ingest_result(
    phantom_cohort: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, IngestSummary]:
    out = tmp_path_factory.mktemp("ingest") / "out"
    return out, ingest(phantom_cohort, out, IngestOptions(workers=2, export_dicom=True))


@pytest.fixture(scope="module")
def ingested(ingest_result: tuple[Path, IngestSummary]) -> Path:
    return ingest_result[0]


def test_the_result_in_memory_is_what_the_csv_files_hold(ingest_result) -> None:
    out, summary = ingest_result
    images = [tuple(row.values()) for row in _rows(out / "images.csv")]
    assert [image.as_tuple() for image in summary.selected] == images
    report = [tuple(row.values()) for row in _rows(out / REPORT_CSV)]
    assert [row.as_tuple() for row in summary.report] == report
    assert summary.images == len(images) == 24


def test_eight_images_per_patient_with_the_papers_names(phantom_cohort, ingested) -> None:
    rows = _rows(ingested / "images.csv")
    assert tuple(rows[0].keys()) == IMAGES_COLUMNS
    secret = load_secret(ingested)
    ids = {row["patient_id"] for row in _rows(phantom_cohort / "labels.csv")}
    pseudonyms = {pseudonymize(pid, secret) for pid in ids}
    assert {row["patient_id"] for row in rows} == pseudonyms  # labels join via the pseudonym
    for pseudonym in pseudonyms:
        mine = [row for row in rows if row["patient_id"] == pseudonym]
        assert [Path(r["image"]).stem for r in mine] == [pseudonym + n for n in NAMES]
        assert [r["view"] for r in mine] == ["myelo"] * 2 + ["sagittal_t2"] + ["axial_t2"] * 5
        assert [r["level"] for r in mine[3:]] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
        for row in mine:
            assert (ingested / row["image"]).is_file()
            assert len(row["source_uid_hash"]) == 64


def test_axial_images_are_the_phantoms_disc_slices(phantom_cohort, ingested) -> None:
    """Eq. 2 picks the slice the phantom put through each disc (lesions.csv has the truth)."""
    import hashlib

    import pydicom

    secret = load_secret(ingested)
    truth = {}
    for row in _rows(phantom_cohort / "lesions.csv"):
        truth[(pseudonymize(row["patient_id"], secret), row["level"])] = int(row["instance"])
    by_hash = {}
    for path in iter_files(phantom_cohort):
        if path.suffix == ".csv":
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_hash[hashlib.sha256(ds.SOPInstanceUID.encode()).hexdigest()] = ds
    checked = 0
    for row in _rows(ingested / "images.csv"):
        source = by_hash[row["source_uid_hash"]]
        if row["view"] == "axial_t2":
            assert source.SeriesDescription == "T2 AX"
            key = (row["patient_id"], row["level"])
            if key in truth:  # lesions.csv lists the abnormal discs only
                assert int(source.InstanceNumber) == truth[key]
                checked += 1
        elif row["view"] == "sagittal_t2":
            assert source.SeriesDescription == "T2 SAG"
        else:
            assert source.SeriesDescription == "MYELO"
    assert checked >= 3


def test_no_identifier_in_any_output(phantom_cohort, ingested) -> None:
    identifiers = _identifiers(phantom_cohort)
    assert identifiers
    for path in ingested.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not _leaks(identifiers, data), path.name
            assert not _leaks(identifiers, path.as_posix().encode()), path.name


def test_exported_dicom_is_deidentified(ingested) -> None:
    import pydicom

    files = sorted(ingested.rglob("*.dcm"))
    assert len(files) == 24
    ds = pydicom.dcmread(files[0])
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert ds.PatientID == files[0].parent.name


def test_other_selection_methods_agree_on_phantoms(phantom_cohort, ingested, tmp_path) -> None:
    from lumbar.ingest.select import AxialSelection, FrameOrder

    env = os.environ.get(SECRET_ENV)
    secret = load_secret(ingested).decode()
    os.environ[SECRET_ENV] = secret
    try:
        out = tmp_path / "stacks"
        ingest(
            phantom_cohort,
            out,
            IngestOptions(
                workers=1, order=FrameOrder.POSITION, axial_selection=AxialSelection.STACKS
            ),
        )
    finally:
        if env is None:
            os.environ.pop(SECRET_ENV)
        else:
            os.environ[SECRET_ENV] = env
    mine = {
        (r["patient_id"], r["level"], r["source_uid_hash"])
        for r in _rows(out / "images.csv")
        if r["view"] != "myelo"
    }
    paper = {
        (r["patient_id"], r["level"], r["source_uid_hash"])
        for r in _rows(ingested / "images.csv")
        if r["view"] != "myelo"
    }
    assert mine == paper


def test_rerun_is_a_no_op(phantom_cohort, tmp_path) -> None:
    out = tmp_path / "out"
    ingest(phantom_cohort, out, IngestOptions(workers=1))
    before = _tree(out)
    summary = ingest(phantom_cohort, out, IngestOptions(workers=1))
    assert summary.index.read == 0 and summary.exported == 0
    assert _tree(out) == before


def test_bad_input_is_reported_and_the_batch_goes_on(phantom_cohort, tmp_path) -> None:
    from pydicom.data import get_testdata_file

    src = _copy(phantom_cohort, tmp_path / "src")
    bad = src / "incoming"
    bad.mkdir()
    (bad / "notes.txt").write_text("report text\n")
    (bad / "empty.dcm").write_bytes(b"")
    shutil.copy(get_testdata_file("MR_truncated.dcm"), bad / "truncated.dcm")
    for name in (
        "MR_small_jpeg_ls_lossless.dcm",
        "MR2_J2KI.dcm",
        "emri_small_RLE.dcm",
        "MR_small_bigendian.dcm",
    ):
        shutil.copy(get_testdata_file(name), bad / name)
    cut = (phantom_cohort / "patient-0001" / "SE0001" / "IM00001").read_bytes()
    (bad / "cut-header").write_bytes(cut[:400])
    out = tmp_path / "out"
    summary = ingest(src, out, IngestOptions(workers=2, report_paths=True))
    assert summary.complete_patients == 3
    assert len(_rows(out / "images.csv")) == 24
    report = {r["file"]: r for r in _rows(out / "ingest-report.csv") if r["file"]}
    assert "not a DICOM file" in report["incoming/notes.txt"]["reason"]
    assert report["incoming/empty.dcm"]["severity"] == "error"
    assert "truncated pixel data" in report["incoming/truncated.dcm"]["reason"]
    assert "incoming/cut-header" in report
    # The real pydicom files are usable images of other patients, each missing series.
    missing = [r for r in _rows(out / "ingest-report.csv") if "missing series" in r["reason"]]
    assert missing and all(r["patient_id"].startswith("P") for r in missing)


def test_symlink_loop_in_a_series_folder_loses_no_file(phantom_cohort, tmp_path) -> None:
    """Issue 17 defect 2: `ln -s zz SE0002/zz` made the walk skip the whole series folder
    (9 of 57 files indexed, exit 0, nothing reported)."""
    src = _copy(phantom_cohort, tmp_path / "src")
    expected = len(iter_files(src))
    series = src / "patient-0001" / "SE0002"
    (series / "zz").symlink_to("zz")
    (series / "dangling").symlink_to("no-such-file")
    out = tmp_path / "out"
    summary = ingest(src, out, IngestOptions(workers=1, report_paths=True))
    assert summary.index.files == expected
    assert summary.complete_patients == 3
    report = {r["file"]: r for r in _rows(out / "ingest-report.csv") if r["file"]}
    assert "loop" in report["patient-0001/SE0002/zz"]["reason"]
    assert "broken" in report["patient-0001/SE0002/dangling"]["reason"]
    # without --report-paths the entries are listed under keyed hashes, never by path
    hashed = tmp_path / "hashed"
    ingest(src, hashed, IngestOptions(workers=1))
    text = (hashed / "ingest-report.csv").read_text()
    assert "loop" in text and "SE0002" not in text and "patient-0001" not in text


FREE_TEXT = {
    "T2 SAG": ("T2 SAG Smith^Johnathan 8675309", "t2_tse_sag for SMITH JOHNATHAN id 8675309"),
    "T2 AX": ("T2 AX (Doe, Janette) 19700101", "t2_tse_tra Doe Janette"),
}
FREE_TEXT_SECRETS = ("smith", "johnathan", "8675309", "doe", "janette", "19700101")


def test_free_text_descriptions_reach_neither_the_index_nor_explain(
    phantom_cohort, tmp_path
) -> None:
    """Issue 17 defect 4: names and IDs typed into SeriesDescription/ProtocolName were stored
    in OUT/.lumbar-index.sqlite (world-readable) and printed by --explain."""
    import pydicom

    from lumbar.ingest import format_explanation
    from lumbar.ingest.index import INDEX_FILE
    from lumbar.pseudonym import SECRET_FILE

    src = tmp_path / "src"
    shutil.copytree(phantom_cohort / "patient-0001", src / "patient-0001")
    for path in iter_files(src):
        ds = pydicom.dcmread(path)
        if ds.SeriesDescription in FREE_TEXT:
            ds.SeriesDescription, ds.ProtocolName = FREE_TEXT[ds.SeriesDescription]
            ds.save_as(path)
    out = tmp_path / "out"
    printed: list[str] = []
    old_umask = os.umask(0)  # the index must be private whatever the umask
    try:
        summary = ingest(
            src,
            out,
            IngestOptions(workers=1),
            explain=lambda decisions: printed.append(format_explanation(decisions)),
        )
    finally:
        os.umask(old_umask)
    assert summary.complete_patients == 1  # still classified: T2 SAG and T2 AX are kept
    chosen = {d.series_class.value: d.summary.description for d in summary.decisions if d.chosen}
    assert chosen == {"sagittal_t2": "T2 SAG", "axial_t2": "T2 AX", "myelo": "MYELO"}
    index_files = sorted(out.glob(INDEX_FILE + "*"))
    stored = b"".join(p.read_bytes() for p in index_files).lower()
    text = "\n".join(printed).lower()
    for word in FREE_TEXT_SECRETS:
        assert word.encode() not in stored, word
        assert word not in text, word
    for path in [*index_files, out / SECRET_FILE]:
        assert (path.stat().st_mode & 0o777) == 0o600, path.name


def test_cleaned_descriptors_classify_the_phantom_as_the_full_text_does(
    phantom_cohort, ingest_result
) -> None:
    from collections import defaultdict

    from lumbar.ingest.classify import classify_series, summarize_series
    from lumbar.ingest.read import HeaderProblem, read_header

    records = defaultdict(list)
    for path in iter_files(phantom_cohort):
        try:
            record = read_header(path)
        except HeaderProblem:
            continue
        records[record.series_uid].append(record)
    full_text = {}
    for uid, members in records.items():
        orientations = [f.orientation for r in members for f in r.frames]
        full_text[uid] = classify_series(summarize_series(uid, members, orientations))
    decisions = ingest_result[1].decisions
    assert len(decisions) == len(full_text) == 15
    for d in decisions:
        assert (d.series_class, d.reason) == (
            full_text[d.summary.series_uid].series_class,
            full_text[d.summary.series_uid].reason,
        )


def test_patient_missing_a_series_is_reported(phantom_cohort, tmp_path) -> None:
    import pydicom

    src = _copy(phantom_cohort, tmp_path / "src")
    for series in (src / "patient-0002").iterdir():
        first = next(series.iterdir())
        if pydicom.dcmread(first, stop_before_pixels=True).SeriesDescription == "MYELO":
            shutil.rmtree(series)
    out = tmp_path / "out"
    summary = ingest(src, out, IngestOptions(workers=1))
    assert summary.complete_patients == 2
    rows = _rows(out / "ingest-report.csv")
    problems = [r["reason"] for r in rows if r["patient_id"] and r["severity"] != "info"]
    assert problems == ["missing series: no myelo series found"]
    assert len(_rows(out / "images.csv")) == 22


def test_patient_filter(phantom_cohort, ingested, tmp_path) -> None:
    chosen = sorted({r["patient_id"] for r in _rows(ingested / "images.csv")})[0]
    os.environ[SECRET_ENV] = load_secret(ingested).decode()
    try:
        ingest(
            phantom_cohort, tmp_path / "o", IngestOptions(workers=1, patients=frozenset({chosen}))
        )
    finally:
        os.environ.pop(SECRET_ENV)
    assert {r["patient_id"] for r in _rows(tmp_path / "o" / "images.csv")} == {chosen}


def test_output_folder_checks(phantom_cohort, tmp_path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        ingest(phantom_cohort, other)
    with pytest.raises(UserError, match="not a folder"):
        ingest(tmp_path / "missing", tmp_path / "o")
    src = _copy(phantom_cohort, tmp_path / "src")
    with pytest.raises(UserError, match="inside the source"):
        ingest(src, src / "out")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from lumbar.cli import main; main()", "ingest", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_nothing_usable_is_a_typed_error_with_the_report(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("x")
    with pytest.raises(NoUsableImages, match="no usable images") as err:
        ingest(src, tmp_path / "out", IngestOptions(workers=1))
    assert err.value.summary.images == 0 and err.value.summary.selected == []
    assert err.value.summary.index.files == 1


def test_nothing_usable_is_one_line_and_exit_2(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("x")
    proc = _cli(str(src), str(tmp_path / "out"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "no usable images" in lines[0]
    assert "Traceback" not in err
    assert (tmp_path / "out" / "ingest-report.csv").is_file()


def test_explain_and_summary_print_no_identifiers(phantom_cohort, tmp_path) -> None:
    proc = _cli(str(phantom_cohort), str(tmp_path / "out"), "--explain", "-j", "1")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "-> axial_t2" in out and "-> sagittal_t2" in out and "-> myelo" in out
    assert "localizer" in out
    assert "3 with all 8 images" in out
    assert not _leaks(_identifiers(phantom_cohort), (out + err).encode())


def test_killed_runs_resume_to_the_same_output(phantom_cohort, tmp_path) -> None:
    """SIGKILL at several points, then a full run: the output equals one uninterrupted run."""
    env = {SECRET_ENV: "kill-test-secret"}
    clean = tmp_path / "clean"
    proc = _cli(str(phantom_cohort), str(clean), "-j", "2", "--export-dicom", env=env)
    assert proc.wait(timeout=120) == 0
    out = tmp_path / "killed"
    interrupted = 0
    for delay in (0.5, 0.9, 1.3, 1.7):
        proc = _cli(str(phantom_cohort), str(out), "-j", "2", "--export-dicom", env=env)
        time.sleep(delay)
        if proc.poll() is None:
            interrupted += 1
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
    proc = _cli(str(phantom_cohort), str(out), "-j", "2", "--export-dicom", env=env)
    assert proc.wait(timeout=120) == 0
    assert interrupted >= 1
    assert _tree(out) == _tree(clean)
    time.sleep(0.5)
    assert not _processes_mentioning(str(out)), "killed runs left worker processes behind"


KILLED = 77


def _killed_at(step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ingest die on the spot (os._exit: no cleanup runs, as with SIGKILL) at `step`."""
    import lumbar.ingest.index as index_module
    import lumbar.ingest.pipeline as pipeline_module
    import lumbar.pseudonym as pseudonym_module

    def die(*_: object, **__: object) -> None:
        os._exit(KILLED)

    def after(function):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            function(*args, **kwargs)
            os._exit(KILLED)

        return call

    if step == "out folder made":
        monkeypatch.setattr(pipeline_module, "load_secret", die)
    elif step == "secret written, not yet in place":
        monkeypatch.setattr(pseudonym_module.os, "link", die)
    elif step == "secret in place, temporary file left":
        monkeypatch.setattr(pseudonym_module.os, "link", after(os.link))
    elif step == "secret made, no index":
        monkeypatch.setattr(pipeline_module, "_remove_partial_files", die)
    elif step == "index file made, empty":
        monkeypatch.setattr(index_module.sqlite3, "connect", die)
    elif step == "index made, nothing indexed":
        monkeypatch.setattr(pipeline_module, "walk_folder", die)
    else:
        raise AssertionError(step)


@pytest.mark.parametrize(
    "step",
    [
        "out folder made",
        "secret written, not yet in place",
        "secret in place, temporary file left",
        "secret made, no index",
        "index file made, empty",
        "index made, nothing indexed",
    ],
)
def test_kill_while_the_output_folder_is_being_marked(
    step: str, phantom_cohort, tmp_path, monkeypatch
) -> None:
    """Issue 17 defect 6: a kill between creating `.lumbar-secret` and the index left an OUT
    that the rerun refused as "not empty and not an earlier ingest's output"."""
    import pydicom

    monkeypatch.delenv(SECRET_ENV, raising=False)
    src = tmp_path / "src"
    shutil.copytree(phantom_cohort / "patient-0001", src / "patient-0001", copy_function=os.link)
    out = tmp_path / "out"
    pid = os.fork()
    if pid == 0:  # the run that is killed
        try:
            _killed_at(step, monkeypatch)
            ingest(src, out, IngestOptions(workers=1))
        finally:
            os._exit(3)  # the step was never reached
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == KILLED
    monkeypatch.undo()
    monkeypatch.delenv(SECRET_ENV, raising=False)
    summary = ingest(src, out, IngestOptions(workers=1))  # the rerun
    assert summary.complete_patients == 1
    assert not list(out.glob(".*.part"))
    first = iter_files(src / "patient-0001")[0]
    original = str(pydicom.dcmread(first, stop_before_pixels=True).PatientID)
    expected = pseudonymize(original, load_secret(out))
    assert {r["patient_id"] for r in _rows(out / "images.csv")} == {expected}


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(
                errors="replace"
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_patient_list_parsing(tmp_path) -> None:
    from lumbar.ingest.pipeline import parse_patient_list as parse_patients

    listing = tmp_path / "ids.txt"
    listing.write_text("Paaaaaaaaaaaa  # first\n\nPbbbbbbbbbbbb\n")
    assert parse_patients(f"@{listing}") == {"Paaaaaaaaaaaa", "Pbbbbbbbbbbbb"}
    assert parse_patients("P1, P2,") == {"P1", "P2"}
    assert parse_patients(None) is None
    with pytest.raises(UserError, match="names no pseudonyms"):
        parse_patients(" , ")
    with pytest.raises(UserError, match="cannot read patient list"):
        parse_patients(f"@{tmp_path / 'missing.txt'}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--order", "random"],
            "frame order must be 'instance' or 'position', got 'random' (--order)",
        ),
        (
            ["--axial-selection", "guess"],
            "axial selection must be one of 'paper', 'stacks', 'geometry', 'auto', got 'guess' "
            "(--axial-selection)",
        ),
        (["--bit-depth", "12"], "bit depth must be 8 or 16, got 12 (--bit-depth)"),
        (["--study-date", "2020"], "YYYYMMDD- or -YYYYMMDD (--study-date)"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, message) -> None:
    src = tmp_path / "src"
    src.mkdir()
    proc = _cli(str(src), str(tmp_path / "out"), *args)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert message in err and "Traceback" not in err


def test_help_does_not_import_pydicom() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom lumbar.cli import app\n"
        "r = CliRunner().invoke(app, ['ingest', '--help'])\nassert r.exit_code == 0, r.output\n"
        "assert 'pydicom' not in sys.modules and 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_sixteen_bit_png_and_contact_sheet(phantom_cohort, tmp_path) -> None:
    from PIL import Image

    out = tmp_path / "out"
    sheet = tmp_path / "sheet.png"
    summary = ingest(
        phantom_cohort, out, IngestOptions(workers=1, bit_depth=16), contact_sheet=sheet
    )
    first = _rows(out / "images.csv")[0]
    with Image.open(out / first["image"]) as image:
        assert image.mode == "I;16"
        assert image.getextrema()[1] > 255
    assert summary.contact_sheet_patients == 3 and sheet.is_file()


def test_no_path_in_terminal_output_for_bad_files(tmp_path) -> None:
    """pydicom's own warnings quote file paths (which may hold a name): none may get out."""
    from pydicom.data import get_testdata_file

    folder = tmp_path / "src" / "DOE_JANE_19700101"
    folder.mkdir(parents=True)
    for name in ("MR_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)
    (folder / "notes").write_text("x")
    proc = _cli(str(tmp_path / "src"), str(tmp_path / "out"), "--explain", "-j", "1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "-> other" in out  # --explain still shows why nothing was usable
    assert "DOE" not in out + err and "19700101" not in out + err


def test_pydicom_warnings_are_silenced_during_ingest(capfd) -> None:
    import warnings

    import pydicom
    from pydicom.data import get_testdata_file

    from lumbar.ingest.pipeline import _quiet_dependencies

    path = get_testdata_file("emri_small_jpeg_2k_lossless_too_short.dcm")
    with pytest.warns(UserWarning, match="found in file"):
        pydicom.dcmread(path)  # proves the file does make pydicom quote its path
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _quiet_dependencies():
            pydicom.dcmread(path)
    captured = capfd.readouterr()
    assert path not in captured.out + captured.err
    assert not [w for w in caught if path in str(w.message)]


def test_auto_picks_the_true_mid_disc_slice_on_every_protocol(protocol_cohorts, tmp_path) -> None:
    """Each scanner protocol of the phantom: auto takes each disc's true mid-disc slice (from
    discs.csv), by Eq. 2 only where the layout is the paper's, and reports uncovered discs."""
    from helpers.protocol_cohorts import read_discs

    from lumbar.ingest.discs import CsvDiscCentres
    from lumbar.ingest.index import uid_hash
    from lumbar.synth.protocols import Protocol

    paper_layout = (Protocol.PAPER, Protocol.NOSAGT2, Protocol.THORACIC, Protocol.CUTSACRUM)
    expected_rule = dict.fromkeys(paper_layout, "eq2")
    for protocol, cohort in protocol_cohorts.items():
        out = tmp_path / protocol.value
        options = IngestOptions(workers=1, disc_centres=CsvDiscCentres(cohort / "discs.csv"))
        summary = ingest(cohort, out, options)
        truth = {r["level"]: r["axial_sop_uid"] for r in read_discs(cohort)}
        axial = {r.level: r for r in summary.selected if r.view == "axial_t2"}
        covered = {level for level, uid in truth.items() if uid}
        assert set(axial) == covered, protocol
        for level, row in axial.items():
            assert row.source_uid_hash == uid_hash(truth[level]), (protocol, level)
            assert row.selection_rule == expected_rule.get(protocol, "geometry"), protocol
            if protocol is not Protocol.NOSAGT2:
                assert abs(float(row.disc_distance_mm)) < 2.5
                assert float(row.disc_x) > 0 and float(row.disc_y) > 0
        geometry = _rows(out / "axial-geometry.csv")
        if protocol is not Protocol.NOSAGT2:  # every slice against every disc, chosen marked
            chosen = {(r["level"], r["source_uid_hash"]) for r in geometry if r["chosen"] == "1"}
            assert chosen == {(lv, row.source_uid_hash) for lv, row in axial.items()}
            slices = {r["source_uid_hash"] for r in geometry}
            assert len(geometry) == len(slices) * len(truth)
        else:
            assert geometry == []
        errors = [r.reason for r in summary.report if r.severity == "error"]
        if protocol is Protocol.LOWER3:
            assert [e.split(" (")[0] for e in errors] == [
                "axial_t2: L1-L2: no axial slice crosses the disc",
                "axial_t2: L2-L3: no axial slice crosses the disc",
            ]
        elif protocol is Protocol.NOSAGT2:
            assert errors == ["missing series: no sagittal_t2 series found"]
            notes = [r.reason for r in summary.report if r.severity == "info" and r.patient_id]
            assert notes == [
                "axial images chosen by Eq. 2 (paper layout), not checked: no sagittal T2 series"
            ]
        else:
            assert errors == [], protocol


def test_paper_selection_is_todays_eq2_and_misses_on_other_layouts(protocol_cohorts, tmp_path):
    from helpers.protocol_cohorts import read_discs

    from lumbar.ingest.index import uid_hash
    from lumbar.synth.protocols import Protocol

    paper = IngestOptions.from_options(axial_selection="paper", workers=1)
    cohort = protocol_cohorts[Protocol.REVERSED]
    summary = ingest(cohort, tmp_path / "reversed", paper)
    truth = {r["level"]: uid_hash(r["axial_sop_uid"]) for r in read_discs(cohort)}
    axial = {r.level: r for r in summary.selected if r.view == "axial_t2"}
    assert axial["L3-L4"].source_uid_hash == truth["L3-L4"]  # the middle stack only
    assert axial["L1-L2"].source_uid_hash == truth["L5-S1"]  # Eq. 2 counts from the wrong end
    assert {r.selection_rule for r in axial.values()} == {"eq2"}


def _insert_before_pixel_data(path: Path, element: bytes) -> None:
    """Splice a raw explicit-VR little-endian element in front of (7FE0,0010)."""
    data = path.read_bytes()
    at = data.rfind(b"\xe0\x7f\x10\x00")
    assert at > 0, path
    path.write_bytes(data[:at] + element + data[at:])


def test_a_malformed_element_in_one_file_does_not_stop_the_dicom_export(
    phantom_cohort, tmp_path
) -> None:
    # Odd-length US (0028,0106) SmallestImagePixelValue: 3 bytes where US needs 2 per value.
    src = tmp_path / "src"
    shutil.copytree(phantom_cohort, src)
    for path in iter_files(src / "patient-0002"):
        _insert_before_pixel_data(path, b"\x28\x00\x06\x01US\x03\x00\x01\x02\x03")
    out = tmp_path / "out"
    summary = ingest(src, out, IngestOptions(workers=1, export_dicom=True, report_paths=True))
    rows = _rows(out / "images.csv")
    assert len(rows) == len(summary.selected) == 16  # the two undamaged patients
    for row in rows:  # every image listed has both its PNG and its de-identified DICOM
        assert (out / row["image"]).is_file()
        assert (out / (row["image"][:-4] + ".dcm")).is_file()
    assert len(list(out.rglob("*.dcm"))) == len(list(out.rglob("*.png"))) == 16
    failed = [r for r in _rows(out / REPORT_CSV) if "not exported" in r["reason"]]
    assert len(failed) == 8
    assert all(r["file"].startswith("patient-0002/") and r["patient_id"] for r in failed)


def test_a_decoder_that_kills_its_worker_costs_only_its_images(
    phantom_cohort, tmp_path, monkeypatch
) -> None:
    import faulthandler

    import pydicom

    import lumbar.ingest.pipeline as pipeline

    first = next(p for p in sorted((phantom_cohort / "patient-0001").rglob("*")) if p.is_file())
    victim = str(pydicom.dcmread(first, stop_before_pixels=True).PatientID)
    render = pipeline.render_frame

    def crashing_render(ds, frame, bit_depth=8):
        # Stands for a native decoder bug: the (forked) worker process dies on these images.
        if str(ds.PatientID) == victim and str(ds.SeriesDescription) == "MYELO":
            faulthandler.disable()  # no stack dump from the worker on the terminal
            os.abort()
        return render(ds, frame, bit_depth)

    monkeypatch.setattr(pipeline, "render_frame", crashing_render)  # inherited by the workers
    out = tmp_path / "out"
    summary = ingest(phantom_cohort, out, IngestOptions(workers=2, report_paths=True))
    assert len(_rows(out / "images.csv")) == len(summary.selected) == 22
    crashed = [r for r in _rows(out / REPORT_CSV) if "crashed" in r["reason"]]
    assert len(crashed) == 2 and all(r["file"].startswith("patient-0001/") for r in crashed)


def test_the_command_line_default_finds_discs_with_the_localiser(protocol_cohorts, tmp_path):
    """`lumbar ingest`'s default: disc centres from the learnt localiser, so a layout Eq. 2
    gets wrong (stored head first) still yields the true mid-disc slices, and discs.csv marks
    the discs on the sagittal image for FaLa."""
    from helpers.protocol_cohorts import read_discs

    from lumbar.ingest.discs import LocaliserSource
    from lumbar.ingest.index import uid_hash
    from lumbar.synth.protocols import Protocol

    options = IngestOptions.from_options(workers=1)
    assert isinstance(options.disc_centres, LocaliserSource)
    assert IngestOptions.from_options(disc_centres="none").disc_centres is None
    cohort = protocol_cohorts[Protocol.REVERSED]
    summary = ingest(cohort, tmp_path / "out", options)
    truth = {r["level"]: uid_hash(r["axial_sop_uid"]) for r in read_discs(cohort)}
    axial = {r.level: r for r in summary.selected if r.view == "axial_t2"}
    assert {lv: r.source_uid_hash for lv, r in axial.items()} == truth
    assert {r.selection_rule for r in axial.values()} == {"geometry"}
    marked = {m.level for m in summary.discs}
    assert set(truth) <= marked
    sagittal = next(r.image for r in summary.selected if r.view == "sagittal_t2")
    assert {m.image for m in summary.discs} == {sagittal}
