"""Header reading: real files of many encodings, and every kind of bad input the issue names."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumbar.ingest.read import HeaderProblem, iter_files, read_header, walk_folder

REAL_MR = [
    "MR_small.dcm",  # explicit little endian, 16-bit
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",  # big endian
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR2_J2KI.dcm",  # 12-bit, JPEG 2000 lossy (pydicom-data)
    "MR2_UNCI.dcm",  # 12-bit, 1024x1024 Philips MR (pydicom-data)
]


@pytest.mark.parametrize("name", REAL_MR)
def test_real_mr_headers_are_read(real_dicom, name: str) -> None:
    record = read_header(real_dicom(name))
    assert record.sop_uid and record.series_uid and record.study_uid
    assert record.modality == "MR"
    assert record.rows > 0 and record.columns > 0
    assert record.frames and len(record.frames) == record.number_of_frames


def test_enhanced_multiframe_mr_has_one_geometry_per_frame(real_dicom) -> None:
    record = read_header(real_dicom("emri_small.dcm"))
    assert record.number_of_frames == 10
    assert len(record.frames) == 10


def test_geometry_and_timing_come_from_classic_tags(tmp_path: Path, mr_factory) -> None:
    path = mr_factory(tmp_path / "a.dcm", position=(1, 2, 3), echo_time=90, repetition_time=4000)
    record = read_header(path)
    assert record.frames[0].position == (1.0, 2.0, 3.0)
    assert record.frames[0].orientation == (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    assert (record.echo_time, record.repetition_time) == (90.0, 4000.0)
    assert "patient_id" not in record.to_json_dict()


@pytest.mark.parametrize(("name", "severity"), [("notes.txt", "info"), ("IM0001", "error")])
def test_non_dicom_file_is_reported(tmp_path: Path, name: str, severity: str) -> None:
    path = tmp_path / name
    path.write_text("not an image\n" * 20)
    with pytest.raises(HeaderProblem, match="not a DICOM file") as info:
        read_header(path)
    assert info.value.severity == severity


def test_empty_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(HeaderProblem):
        read_header(path)


def test_truncated_pixel_data_is_reported(real_dicom) -> None:
    with pytest.raises(HeaderProblem, match="truncated pixel data"):
        read_header(real_dicom("MR_truncated.dcm"))


def test_file_cut_inside_the_header_is_reported(tmp_path: Path, real_dicom) -> None:
    data = real_dicom("MR_small.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:700])
    with pytest.raises(HeaderProblem):
        read_header(path)


def test_missing_pixel_data_is_reported(tmp_path: Path, real_dicom) -> None:
    import pydicom

    ds = pydicom.dcmread(real_dicom("MR_small.dcm"))
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    with pytest.raises(HeaderProblem, match="missing pixel data"):
        read_header(path)


@pytest.mark.parametrize("tag", ["SeriesInstanceUID", "SOPInstanceUID", "StudyInstanceUID"])
def test_missing_uids_are_reported(tmp_path: Path, mr_factory, tag: str) -> None:
    import pydicom

    path = mr_factory(tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    delattr(ds, tag)
    ds.save_as(path)
    with pytest.raises(HeaderProblem, match=f"missing required tag {tag}"):
        read_header(path)


def test_missing_patient_id_falls_back_to_the_study_with_a_warning(
    tmp_path: Path, mr_factory
) -> None:
    record = read_header(mr_factory(tmp_path / "a.dcm", patient_id="", study_uid="1.9"))
    assert record.patient_id == "study:1.9"
    assert any("PatientID missing" in w for w in record.warnings)


def test_contradictory_orientation_gives_a_warning_not_a_crash(tmp_path: Path, mr_factory) -> None:
    path = mr_factory(tmp_path / "a.dcm", orientation=(1, 0, 0, 1, 0, 0))  # not orthogonal
    record = read_header(path)
    assert record.frames[0].orientation is None
    assert any("ImageOrientationPatient" in w for w in record.warnings)


def test_dataset_without_preamble_is_read(tmp_path: Path, mr_factory) -> None:
    """Old exports write the bare dataset: no preamble, no DICM, no file meta."""
    import io

    import pydicom
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(mr_factory(tmp_path / "a.dcm"))
    del ds.file_meta
    buffer = io.BytesIO()
    handle = DicomFileLike(buffer)
    handle.is_little_endian, handle.is_implicit_VR = True, True
    write_dataset(handle, ds)
    raw = tmp_path / "raw"
    raw.write_bytes(buffer.getvalue())
    assert raw.read_bytes()[:2] == b"\x08\x00"
    assert read_header(raw).sop_uid == ds.SOPInstanceUID


def test_dicomdir_is_info_not_error(real_dicom) -> None:
    with pytest.raises(HeaderProblem) as info:
        read_header(real_dicom("DICOMDIR"))
    assert info.value.severity == "info"


def test_iter_files_finds_any_name_and_nesting(tmp_path: Path) -> None:
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    for name in ("a/IM1", "a/b/c/.hidden", "a/b/x.dcm", "top"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    found = [p.relative_to(tmp_path).as_posix() for p in iter_files(tmp_path)]
    assert found == ["a/IM1", "a/b/c/.hidden", "a/b/x.dcm", "top"]


def test_walk_handles_each_entry_on_its_own(tmp_path: Path) -> None:
    """Issue 17 defect 2: one bad entry (a link loop) made the walk drop its whole folder.
    Links to files are followed, a folder is walked once by its real path (links to it, and
    loops, are listed), broken links and special files are listed with a reason."""
    import os

    root = tmp_path / "src"
    series = root / "p1" / "SE0002"
    series.mkdir(parents=True)
    for name in ("IM1", "IM2", "IM3"):
        (series / name).write_bytes(b"x")
    (series / "zz").symlink_to("zz")  # ln -s zz SE0002/zz
    (series / "a").symlink_to("b")  # a two-link loop
    (series / "b").symlink_to("a")
    (series / "gone").symlink_to("missing-target")
    (series / "up").symlink_to("..", target_is_directory=True)
    (root / "p1" / "again").symlink_to("SE0002", target_is_directory=True)
    (series / "IM1-link").symlink_to("IM1")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "IM9").write_bytes(b"x")
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)
    os.mkfifo(series / "pipe")
    walk = walk_folder(root)
    found = [p.relative_to(root).as_posix() for p in walk.files]
    assert found == [
        "linked-folder/IM9",
        "p1/SE0002/IM1",
        "p1/SE0002/IM1-link",
        "p1/SE0002/IM2",
        "p1/SE0002/IM3",
    ]
    reasons = {p.relative_to(root).as_posix(): (sev, why) for p, sev, why in walk.skipped}
    assert set(reasons) == {
        "p1/SE0002/zz",
        "p1/SE0002/a",
        "p1/SE0002/b",
        "p1/SE0002/gone",
        "p1/SE0002/up",
        "p1/again",
        "p1/SE0002/pipe",
    }
    assert "loop" in reasons["p1/SE0002/zz"][1] and reasons["p1/SE0002/zz"][0] == "warning"
    assert "loop" in reasons["p1/SE0002/a"][1]
    assert "broken" in reasons["p1/SE0002/gone"][1]
    assert "already walked" in reasons["p1/SE0002/up"][1]
    assert "already walked" in reasons["p1/again"][1]
    assert "not a regular file" in reasons["p1/SE0002/pipe"][1]
    assert iter_files(root) == walk.files


def test_absurd_number_of_frames_is_reported_at_once(tmp_path: Path, mr_factory) -> None:
    path = mr_factory(tmp_path / "a.dcm", NumberOfFrames=150_000)
    with pytest.raises(HeaderProblem, match="NumberOfFrames"):
        read_header(path)
