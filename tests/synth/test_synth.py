"""The phantom cohort as a PACS export: structure, tags, geometry, labels, determinism, errors."""

import csv
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lumbar.errors import UserError
from lumbar.grading import LEVELS
from lumbar.synth import synthesize_cohort


def _series(patient_dir: Path) -> dict[str, list[pydicom.Dataset]]:
    series = defaultdict(list)
    for path in patient_dir.rglob("*"):
        if path.is_file():
            ds = pydicom.dcmread(path)
            series[ds.SeriesDescription].append(ds)
    return {k: sorted(v, key=lambda d: d.InstanceNumber) for k, v in series.items()}


@pytest.fixture(scope="module")
def first_patient(phantom_cohort: Path) -> dict[str, list[pydicom.Dataset]]:
    return _series(sorted(p for p in phantom_cohort.iterdir() if p.is_dir())[0])


def test_one_folder_per_patient_and_labels(phantom_cohort: Path):
    folders = sorted(p.name for p in phantom_cohort.iterdir() if p.is_dir())
    assert folders == ["patient-0001", "patient-0002", "patient-0003"]
    with open(phantom_cohort / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["patient_id", "level", "disc_state", "herniation", "scs", "rfs", "lfs"]
    assert len(rows) == 3 * len(LEVELS)
    assert all(0 <= int(r[f]) <= 3 for r in rows for f in ("disc_state", "scs", "rfs", "lfs"))


def test_series_layout_like_the_papers_pacs(first_patient):
    assert set(first_patient) == {"T2 SAG", "T2 AX", "MYELO", "SURVEY", "T1 SAG"}
    assert len(first_patient["T2 SAG"]) >= 11
    assert len(first_patient["T2 AX"]) == 25
    assert len(first_patient["MYELO"]) >= 2
    assert len(first_patient["T1 SAG"]) >= 11
    numbers = [s[0].SeriesNumber for s in first_patient.values()]
    assert len(set(numbers)) == len(numbers)


def test_tags_are_complete_and_consistent(first_patient):
    uids = set()
    study_uids = set()
    for description, images in first_patient.items():
        for ds in images:
            assert ds.Modality == "MR" and ds.SOPClassUID == pydicom.uid.MRImageStorage
            assert ds.PatientName and ds.PatientID and ds.PatientBirthDate and ds.AccessionNumber
            assert ds.SeriesDescription == description
            assert len(ds.ImageOrientationPatient) == 6 and len(ds.ImagePositionPatient) == 3
            assert ds.PixelSpacing[0] > 0 and ds.SliceThickness > 0
            assert ds.WindowWidth > 0 and ds.BitsStored == 12
            assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
            uids.add(ds.SOPInstanceUID)
            study_uids.add(ds.StudyInstanceUID)
    assert len(uids) == sum(len(v) for v in first_patient.values())
    assert len(study_uids) == 1
    t1, t2 = first_patient["T1 SAG"][0], first_patient["T2 SAG"][0]
    assert t1.EchoTime < 20 and t1.RepetitionTime < 800
    assert t2.EchoTime > 80 and t2.RepetitionTime > 2000


def _normal(ds):
    iop = np.asarray(ds.ImageOrientationPatient, float)
    return np.cross(iop[:3], iop[3:])


def test_planes_match_orientation(first_patient):
    assert abs(_normal(first_patient["T2 SAG"][0])[0]) > 0.99  # sagittal: normal along x
    assert all(abs(_normal(ds)[2]) > 0.85 for ds in first_patient["T2 AX"])  # axial: along z
    assert abs(_normal(first_patient["MYELO"][0])[1]) > 0.99  # coronal: normal along y


def test_axial_stacks_run_upward_from_l5s1_with_eq2_frames_mid_disc(first_patient):
    axial = first_patient["T2 AX"]
    heights = [float(ds.ImagePositionPatient[2]) + 0 for ds in axial]
    centres = []
    for ds in axial:
        rows, cols = ds.Rows, ds.Columns
        iop = np.asarray(ds.ImageOrientationPatient, float)
        ipp = np.asarray(ds.ImagePositionPatient, float)
        spacing = float(ds.PixelSpacing[0])
        centre = ipp + (cols - 1) / 2 * spacing * iop[:3] + (rows - 1) / 2 * spacing * iop[3:]
        centres.append(centre[2])
    assert np.all(np.diff(centres) > 0), "axial frames must ascend from L5-S1 to L1-L2"
    assert len(heights) == 25
    # each level's stack shares one orientation; the stacks are angled differently
    orientations = [tuple(np.round(axial[i].ImageOrientationPatient, 4)) for i in range(25)]
    for x in range(5):
        assert len(set(orientations[5 * x : 5 * x + 5])) == 1
    assert len(set(orientations)) > 1


def test_lesions_are_on_mid_disc_or_neighbouring_slices(phantom_cohort: Path):
    with open(phantom_cohort / "lesions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(phantom_cohort / "labels.csv", newline="") as handle:
        labels = {(r["patient_id"], r["level"]): r for r in csv.DictReader(handle)}
    for row in rows:
        grade = labels[(row["patient_id"], row["level"])]
        assert int(grade["disc_state"]) in (2, 3)
        assert int(row["x0"]) < int(row["x1"]) and int(row["y0"]) < int(row["y1"])
    abnormal = [k for k, g in labels.items() if int(g["disc_state"]) in (2, 3)]
    assert {(r["patient_id"], r["level"]) for r in rows} == set(abnormal)


def test_same_seed_gives_identical_files(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    synthesize_cohort(a, patients=1, seed=5, workers=1, progress=False)
    synthesize_cohort(b, patients=1, seed=5, workers=1, progress=False)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a[:: max(1, len(files_a) // 8)]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_rejects_bad_patient_count_and_writes_nothing(tmp_path: Path):
    with pytest.raises(UserError, match="at least 1"):
        synthesize_cohort(tmp_path / "out", patients=0, progress=False)
    assert not (tmp_path / "out").exists()


def test_refuses_non_empty_output_without_force(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="not empty; allow replacing its contents") as err:
        synthesize_cohort(out, patients=1, progress=False)
    assert err.value.option == "force"
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_output_under_a_file_is_refused(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError):
        synthesize_cohort(blocker / "out", patients=1, progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_output_folder(tmp_path: Path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UserError, match="not writable"):
        synthesize_cohort(locked / "out", patients=1, progress=False)


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lumbar.cli", *args], capture_output=True, text=True, **kwargs
    )


def test_cli_user_errors_are_one_line_exit_2(tmp_path: Path):
    result = _cli("synth", str(tmp_path / "o"), "--patients", "0")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "--patients must be at least 1" in result.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = _cli("synth", str(tmp_path / "full"), "--patients", "1")
    assert result.returncode == 2 and "not empty" in result.stderr


def _default_sigint() -> None:
    # a shell's background job starts with SIGINT ignored; a user's Ctrl-C does not
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "workers"), [(signal.SIGINT, "1"), (signal.SIGTERM, "2")])
def test_interrupt_leaves_no_half_written_files(tmp_path: Path, sig: int, workers: str):
    out = tmp_path / "cohort"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lumbar.cli",
            "synth",
            str(out),
            "--patients",
            "40",
            "--workers",
            workers,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until it is writing DICOM files
        if any(p.is_file() for p in tmp_path.glob(".cohort.partial-*/*/*/*")):
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_previous_output(tmp_path: Path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "old.txt").write_text("old")
    synthesize_cohort(out, patients=1, seed=2, force=True, progress=False)
    assert not (out / "old.txt").exists() and (out / "labels.csv").is_file()
