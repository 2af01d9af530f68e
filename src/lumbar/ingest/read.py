"""Read DICOM headers (never pixels) into flat `InstanceRecord`s, with a reason for every failure.

Reading stops before Pixel Data, so indexing costs a few kilobytes per file; the file size is
then checked against the size the header promises, which catches truncated files without
decoding them.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lumbar.ingest.export import MAX_FRAMES
from lumbar.pseudonym import pseudonymize

# Media Storage Directory Storage (DICOMDIR): an index, not an image.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
ENHANCED_MR_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.4.1",
        "1.2.840.10008.5.1.4.1.1.4.3",
    }  # Enhanced MR, Enhanced MR Colour
)
_NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
NON_DICOM_SUFFIXES = frozenset(
    {".csv", ".txt", ".md", ".pdf", ".xml", ".json", ".html", ".htm", ".ini", ".log", ".exe",
     ".dll", ".inf", ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".zip", ".yaml", ".yml", ".db"}
)  # fmt: skip


def _load_tables() -> None:
    if not _TAGS:
        tags, vrs = _keyword_tables()
        _TAGS.update(tags)
        _VRS.update(vrs)


class HeaderProblem(Exception):
    """A file that cannot be used; the message is the report's reason (never patient data)."""

    def __init__(self, reason: str, severity: str = "error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.severity = severity


@dataclass
class FrameGeometry:
    """Where one frame lies: ImagePositionPatient (mm), ImageOrientationPatient (cosines) and
    PixelSpacing (row spacing, column spacing in mm, DICOM's order)."""

    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    spacing: tuple[float, float] | None = None


@dataclass
class InstanceRecord:
    """The header facts that classification, selection and export need, for one SOP instance.

    `patient_id` is the ORIGINAL PatientID and lives only in memory: the index stores the
    pseudonym instead.
    """

    study_uid: str
    series_uid: str
    sop_uid: str
    patient_id: str
    sop_class_uid: str = ""
    transfer_syntax: str = ""
    modality: str = ""
    study_date: str = ""
    series_number: int | None = None
    series_description: str = ""
    protocol_name: str = ""
    image_type: str = ""
    instance_number: int | None = None
    number_of_frames: int = 1
    rows: int = 0
    columns: int = 0
    echo_time: float | None = None
    repetition_time: float | None = None
    frames: list[FrameGeometry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (frames as lists), without the original PatientID."""
        # Built by hand: dataclasses.asdict deep-copies and costs more than reading the file.
        data = {f: getattr(self, f) for f in _RECORD_FIELDS}
        data["frames"] = [
            {"position": g.position, "orientation": g.orientation, "spacing": g.spacing}
            for g in self.frames
        ]
        data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, Any], patient_id: str) -> InstanceRecord:
        """Inverse of `to_json_dict`; `patient_id` is whatever identity the caller keys on."""
        data = dict(data)
        data["frames"] = [
            FrameGeometry(
                tuple(f["position"]) if f["position"] else None,
                tuple(f["orientation"]) if f["orientation"] else None,
                tuple(f["spacing"]) if f.get("spacing") else None,
            )
            for f in data.get("frames", [])
        ]
        return cls(patient_id=patient_id, **data)


_RECORD_FIELDS = tuple(f.name for f in fields(InstanceRecord) if f.name != "patient_id")


def read_header(path: str | os.PathLike[str]) -> InstanceRecord:
    """Read one file's header into an `InstanceRecord`.

    Raises:
        HeaderProblem: not DICOM, a DICOMDIR or non-image object, missing UIDs or PatientID,
            no or truncated pixel data, or geometry tags that contradict each other.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            force = _looks_like_raw_dataset(handle)
            try:
                ds = pydicom.dcmread(handle, stop_before_pixels=True, force=force)
            except InvalidDicomError:
                # Documents that travel with exports (labels, reports, viewers) are noted,
                # not counted as problems; a file that could be a broken DICOM is an error.
                known = Path(path).suffix.lower() in NON_DICOM_SUFFIXES
                raise HeaderProblem(
                    "not a DICOM file (no DICM prefix)", severity="info" if known else "error"
                ) from None
            header_end = handle.tell()
    except HeaderProblem:
        raise
    except OSError as err:
        raise HeaderProblem(f"cannot read file ({err.strerror or type(err).__name__})") from None
    except Exception as err:  # pydicom raises many types on corrupt headers
        raise HeaderProblem(f"corrupt DICOM header ({type(err).__name__})") from None
    try:
        record = record_from_dataset(ds)
        _check_pixel_data(ds, record, remaining=size - header_end)
    except HeaderProblem:
        raise
    except Exception as err:
        raise HeaderProblem(f"unreadable DICOM header ({type(err).__name__})") from None
    return record


def record_from_dataset(ds: Any) -> InstanceRecord:
    """Build an `InstanceRecord` from a pydicom Dataset read from a file or DICOMweb metadata.

    Raises:
        HeaderProblem: the object is not a usable image.
    """
    _load_tables()
    h = _Header(ds)
    meta = getattr(ds, "file_meta", None)
    sop_class = h.text("SOPClassUID") or (
        str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    )
    if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        raise HeaderProblem("DICOMDIR (a directory index, not an image)", severity="info")
    uids = {name: h.text(name) for name in REQUIRED_UIDS}
    missing = [name for name, value in uids.items() if not value]
    if missing:
        raise HeaderProblem(f"missing required tag {', '.join(missing)}")
    rows, columns = h.int("Rows"), h.int("Columns")
    if not rows or not columns:
        name = _sop_class_name(sop_class)
        raise HeaderProblem(f"not an image ({name}: no Rows/Columns)", severity="info")
    frames = h.int("NumberOfFrames") or 1
    if frames > MAX_FRAMES:
        raise HeaderProblem(f"implausible NumberOfFrames {frames} (more than {MAX_FRAMES})")
    patient_id = h.text("PatientID")
    warnings = []
    if not patient_id:
        # Already-anonymised exports often blank PatientID: key the patient by the study.
        patient_id = f"study:{uids['StudyInstanceUID']}"
        warnings.append("PatientID missing: the study is treated as its own patient")
    record = InstanceRecord(
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        sop_uid=uids["SOPInstanceUID"],
        patient_id=patient_id,
        sop_class_uid=sop_class,
        transfer_syntax=str(meta.get("TransferSyntaxUID", "")) if meta is not None else "",
        modality=h.text("Modality"),
        study_date=h.text("StudyDate"),
        series_number=h.int("SeriesNumber"),
        series_description=h.text("SeriesDescription"),
        protocol_name=h.text("ProtocolName"),
        image_type="\\".join(h.texts("ImageType")),
        instance_number=h.int("InstanceNumber"),
        number_of_frames=max(1, frames),
        rows=rows,
        columns=columns,
    )
    record.warnings.extend(warnings)
    record.echo_time, record.repetition_time = (
        _float(h.texts("EchoTime")),
        _float(h.texts("RepetitionTime")),
    )
    if record.echo_time is None or record.repetition_time is None:
        te, tr = _timing(ds)
        record.echo_time = record.echo_time if record.echo_time is not None else te
        record.repetition_time = (
            record.repetition_time if record.repetition_time is not None else tr
        )
    record.frames = _frame_geometry(ds, record, h)
    return record


class _Header:
    """Fast reads of top-level header values straight from pydicom's raw elements.

    pydicom converts (and validates) an element on first access, which costs more than
    parsing the file; for the plain ASCII values an index needs, decoding the raw bytes here
    is 30 times cheaper. Anything else (non-ASCII text, already converted elements from
    DICOMweb JSON) goes through pydicom's own conversion.
    """

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        encoding = getattr(ds, "original_encoding", None) or (None, None)
        self.byteorder = "big" if encoding[1] is False else "little"

    def texts(self, keyword: str) -> list[str]:
        """All values of a string or number element, as stripped strings."""
        tag = _TAGS.get(keyword)
        elem = self.ds.get_item(tag) if tag is not None else None
        if elem is None:
            return []
        value = elem.value
        if isinstance(value, bytes) and _VRS.get(keyword) not in _BINARY_VRS:
            if value.isascii():
                text = value.decode("ascii")
                return [part.strip(" \x00") for part in text.split("\\")] if text.strip() else []
            value = self.ds[tag].value  # non-ASCII: let pydicom apply the character set
        elif isinstance(value, bytes):
            size = 2 if _VRS.get(keyword) == "US" else 4
            return [
                str(int.from_bytes(value[i : i + size], self.byteorder))
                for i in range(0, len(value) - size + 1, size)
            ]
        return [str(v).strip() for v in multi_values(value)]

    def text(self, keyword: str) -> str:
        """The first value, or ''."""
        values = self.texts(keyword)
        return values[0] if values else ""

    def int(self, keyword: str) -> int | None:
        """The first value as an integer, or None."""
        return _int(self.texts(keyword))

    def floats(self, keyword: str, count: int) -> tuple[float, ...] | None:
        """Exactly `count` finite floats, or None."""
        return _floats(self.texts(keyword), count)


def _keyword_tables() -> tuple[dict[str, int], dict[str, str]]:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    keywords = (
        "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID",
        "Modality", "StudyDate", "SeriesNumber", "SeriesDescription", "ProtocolName",
        "ImageType", "InstanceNumber", "NumberOfFrames", "Rows", "Columns", "EchoTime",
        "RepetitionTime", "ImageOrientationPatient", "ImagePositionPatient", "BitsAllocated",
        "SamplesPerPixel", "PixelSpacing",
    )  # fmt: skip
    tags = {k: int(tag_for_keyword(k)) for k in keywords}  # type: ignore[arg-type]
    return tags, {k: dictionary_VR(t) for k, t in tags.items()}


_BINARY_VRS = frozenset({"US", "UL", "SS", "SL"})
_TAGS: dict[str, int] = {}
_VRS: dict[str, str] = {}


def _check_pixel_data(ds: Any, record: InstanceRecord, remaining: int) -> None:
    """Compare the bytes after the header with what Rows x Columns x frames x bits promise."""
    if remaining <= 0:
        raise HeaderProblem("missing pixel data")
    if record.transfer_syntax and record.transfer_syntax not in _NATIVE_SYNTAXES:
        return  # encapsulated: its length is only known by decoding; export checks that
    header = _Header(ds)
    bits = header.int("BitsAllocated") or 0
    samples = header.int("SamplesPerPixel") or 1
    if bits not in (1, 8, 16, 32, 64):
        raise HeaderProblem(f"unsupported BitsAllocated {bits}")
    expected = math.ceil(
        record.rows * record.columns * record.number_of_frames * samples * bits / 8
    )
    payload = remaining - 12  # tag (4) + VR and reserved (4) + 32-bit length (4), or implicit 8
    if payload + 4 < expected:
        raise HeaderProblem(
            f"truncated pixel data ({max(payload, 0)} of {expected} bytes for "
            f"{record.rows}x{record.columns}x{record.number_of_frames} at {bits} bits)"
        )


def _looks_like_raw_dataset(handle: Any) -> bool:
    """True for DICOM written without the 128-byte preamble (old exports): read it with force."""
    head = handle.read(132)
    handle.seek(0)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return False
    return len(head) >= 8 and head[0:2] in (b"\x02\x00", b"\x08\x00")


def _frame_geometry(ds: Any, record: InstanceRecord, h: _Header) -> list[FrameGeometry]:
    """Per-frame position and orientation, from classic tags or enhanced functional groups."""
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None or shared is not None:
        frames = []
        shared_iop = _orientation(_first(_get(shared, "PlaneOrientationSequence")))
        shared_ipp = _position(_first(_get(shared, "PlanePositionSequence")))
        shared_spacing = _spacing(_first(_get(shared, "PixelMeasuresSequence")))
        items = list(per_frame or [])
        for index in range(record.number_of_frames):
            item = items[index] if index < len(items) else None
            iop = _orientation(_first(_get(item, "PlaneOrientationSequence"))) or shared_iop
            ipp = _position(_first(_get(item, "PlanePositionSequence"))) or shared_ipp
            spacing = _spacing(_first(_get(item, "PixelMeasuresSequence"))) or shared_spacing
            frames.append(FrameGeometry(ipp, iop, spacing))
        return frames
    iop = _check_orientation(h.floats("ImageOrientationPatient", 6))
    position = h.floats("ImagePositionPatient", 3)
    ipp = (position[0], position[1], position[2]) if position is not None else None
    if h.texts("ImageOrientationPatient") and iop is None:
        record.warnings.append("ImageOrientationPatient is not two orthogonal unit vectors")
    spacing = _positive_pair(h.floats("PixelSpacing", 2))
    return [FrameGeometry(ipp, iop, spacing) for _ in range(record.number_of_frames)]


def _orientation(item: Any) -> tuple[float, ...] | None:
    """ImageOrientationPatient as 6 floats when it is two orthogonal unit vectors, else None."""
    return _check_orientation(_floats(_get(item, "ImageOrientationPatient"), 6))


def _check_orientation(values: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """`values` when they are two orthogonal unit vectors, else None."""
    if values is None:
        return None
    row, col = values[:3], values[3:]
    norm_r = math.sqrt(sum(v * v for v in row))
    norm_c = math.sqrt(sum(v * v for v in col))
    dot = sum(a * b for a, b in zip(row, col, strict=True))
    if abs(norm_r - 1) > 0.01 or abs(norm_c - 1) > 0.01 or abs(dot) > 0.01:
        return None
    return values


def _spacing(item: Any) -> tuple[float, float] | None:
    return _positive_pair(_floats(_get(item, "PixelSpacing"), 2))


def _positive_pair(values: tuple[float, ...] | None) -> tuple[float, float] | None:
    """PixelSpacing as (row, column) mm when both are positive, else None."""
    if values is None or values[0] <= 0 or values[1] <= 0:
        return None
    return (values[0], values[1])


def _position(item: Any) -> tuple[float, float, float] | None:
    values = _floats(_get(item, "ImagePositionPatient"), 3)
    return (values[0], values[1], values[2]) if values is not None else None


def _timing(ds: Any) -> tuple[float | None, float | None]:
    """EchoTime and RepetitionTime in ms, from classic tags or enhanced MR functional groups."""
    te = _float(ds.get("EchoTime"))
    tr = _float(ds.get("RepetitionTime"))
    if te is None or tr is None:
        for group in (
            ds.get("SharedFunctionalGroupsSequence"),
            ds.get("PerFrameFunctionalGroupsSequence"),
        ):
            item = _first(group)
            if item is None:
                continue
            if te is None:
                te = _float(_get(_first(_get(item, "MREchoSequence")), "EffectiveEchoTime"))
            if tr is None:
                timing = _first(_get(item, "MRTimingAndRelatedParametersSequence"))
                tr = _float(_get(timing, "RepetitionTime"))
    return te, tr


def _sop_class_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name if uid else "unknown SOP class"


def _get(item: Any, keyword: str) -> Any:
    if item is None:
        return None
    try:
        return item.get(keyword)
    except Exception:
        return None


def _first(seq: Any) -> Any:
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


def multi_values(value: Any) -> list[Any]:
    """A DICOM element value as a list: none for None, one for a scalar or string, else each."""
    if value is None:
        return []
    if isinstance(value, str | bytes):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    items = multi_values(value)
    if len(items) != count:
        return None
    try:
        out = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _float(value: Any) -> float | None:
    items = multi_values(value)
    if not items:
        return None
    try:
        out = float(items[0])
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    items = multi_values(value)
    if not items:
        return None
    try:
        return int(float(items[0]))
    except (TypeError, ValueError):
        return None


@dataclass
class FolderWalk:
    """What `walk_folder` found: the files to read, and every entry it left out, with why.

    Attributes:
        files: regular files (and links to them), sorted.
        skipped: (path, severity, reason) of each entry not read: link loops, broken links,
            links to a folder already walked, special files, unreadable folders.
    """

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str, str]] = field(default_factory=list)


def walk_folder(root: Path) -> FolderWalk:
    """Every file under `root` (any names, any nesting, hidden ones too), each entry on its own.

    Links are followed: a link to a file is read like the file (a file reached twice is then
    a duplicate SOPInstanceUID, reported by the index), and a link to a folder is walked,
    wherever it points, but each real folder (device, inode) only once: real paths first, then
    linked folders in path order, so loops and repeats end. An entry that cannot be used (a
    link loop, a broken link, a FIFO, an unreadable folder) is listed in `skipped` and the
    rest of its folder is still walked.
    """
    walk = FolderWalk()
    root = Path(root)
    try:
        info = os.stat(root)
    except OSError as err:
        walk.skipped.append((root, "error", f"cannot read folder ({err.strerror})"))
        return walk
    seen = {(info.st_dev, info.st_ino)}
    folders = [root]  # real folders, walked first
    linked: list[Path] = []  # links to folders, walked once the real tree is done
    while folders or linked:
        if not folders:
            linked.sort(reverse=True)
            link = linked.pop()
            try:
                target = os.stat(link)
            except OSError as err:  # changed since it was seen
                walk.skipped.append((link, "warning", _link_problem(err)))
                continue
            if (target.st_dev, target.st_ino) in seen:
                walk.skipped.append(
                    (link, "info", "link to a folder already walked (a loop or a repeat); skipped")
                )
                continue
            seen.add((target.st_dev, target.st_ino))
            folders.append(link)
        folder = folders.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as err:
            walk.skipped.append((Path(folder), "error", f"cannot read folder ({err.strerror})"))
            continue
        for entry in entries:
            path = Path(entry.path)
            is_link = False
            try:
                is_link = entry.is_symlink()
                if is_link:
                    target = os.stat(path)  # follows the link; raises on a loop or dangling
                    mode = target.st_mode
                else:
                    mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as err:
                if is_link:
                    walk.skipped.append((path, "warning", _link_problem(err)))
                else:
                    walk.skipped.append((path, "error", f"cannot read ({err.strerror})"))
                continue
            if stat.S_ISREG(mode):
                walk.files.append(path)
            elif stat.S_ISDIR(mode):
                if not is_link:
                    own = entry.stat(follow_symlinks=False)
                    seen.add((own.st_dev, own.st_ino))
                    folders.append(path)
                else:
                    linked.append(path)
            else:
                walk.skipped.append((path, "info", "not a regular file (a FIFO, socket or device)"))
    walk.files.sort()
    walk.skipped.sort()
    return walk


def _link_problem(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symbolic link loop; skipped"
    if err.errno == errno.ENOENT:
        return "broken symbolic link (its target does not exist); skipped"
    return f"symbolic link cannot be followed ({err.strerror}); skipped"


def iter_files(root: Path) -> list[Path]:
    """The files `walk_folder` finds under `root` (sorted); see it for how links are handled."""
    return walk_folder(root).files


def patient_pseudonym(paths: Iterable[Path], secret: bytes) -> str | None:
    """The keyed pseudonym of the patient of the first readable DICOM file in `paths` (a
    study's files, or one slice), as `lumbar ingest` names patients; None when none is
    readable. What `lumbar predict` and `lumbar localize` call a DICOM input in their outputs."""
    for path in paths:
        try:
            return pseudonymize(read_header(path).patient_id, secret)
        except (HeaderProblem, OSError, ValueError):
            continue
    return None
