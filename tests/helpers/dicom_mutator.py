"""A seeded mutator of DICOM files for fuzzing `lumbar ingest` (tests/ingest/test_fuzz_ingest.py,
benchmarks/fuzz_ingest.py): the damage real exports and hostile senders produce.

Mutations work on the raw bytes. Explicit VR little-endian data sets are split into their
top-level elements so that an element can be given a wrong length or VR, duplicated, dropped
or given an odd size; other encodings get the byte-level mutations (truncation, bit flips).
The same seed and input always give the same mutant.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
_ALL_VRS = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV", b"XX", b"\x00\x00",
]  # fmt: skip
# Header elements whose value sizes the pixel data: the "odd sizes" targets (value VR, tag).
_SIZE_TAGS = {
    (0x0028, 0x0010): "US",  # Rows
    (0x0028, 0x0011): "US",  # Columns
    (0x0028, 0x0100): "US",  # BitsAllocated
    (0x0028, 0x0101): "US",  # BitsStored
    (0x0028, 0x0002): "US",  # SamplesPerPixel
    (0x0028, 0x0008): "IS",  # NumberOfFrames
}
_ODD_NUMBERS = (0, 1, 3, 7, 255, 4097, 8193, 65535, 100001, 2**31 - 1)


@dataclass
class Element:
    """One top-level element: where it starts and ends in the file, its tag and VR."""

    start: int
    end: int
    group: int
    element: int
    vr: bytes
    header: int  # bytes before the value (8 or 12)


def elements(data: bytes) -> tuple[int, list[Element]]:
    """(offset of the data set, its top-level elements) of an explicit VR little-endian file;
    an empty list when the file is not one (implicit VR, big endian, no preamble)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return 0, []
    found: list[Element] = []
    offset = 132
    little_explicit = False
    while offset + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, offset)
        vr = data[offset + 4 : offset + 6]
        if group != 0x0002 and not little_explicit:
            return offset, []
        if not vr.isalpha() or not vr.isupper():
            break
        if vr in _LONG_VRS:
            if offset + 12 > len(data):
                break
            (length,) = struct.unpack_from("<I", data, offset + 8)
            header = 12
        else:
            (length,) = struct.unpack_from("<H", data, offset + 6)
            header = 8
        if length == 0xFFFFFFFF:
            end = _undefined_length_end(data, offset + header)
            if end is None:
                break
        else:
            end = offset + header + length
        if end > len(data):
            break
        found.append(Element(offset, end, group, element, vr, header))
        if group == 0x0002 and element == 0x0010:
            syntax = data[offset + header : end].rstrip(b"\x00 ")
            little_explicit = syntax == b"1.2.840.10008.1.2.1"
        offset = end
    body = next((e.start for e in found if e.group != 0x0002), 0)
    return body, [e for e in found if e.group != 0x0002]


def _undefined_length_end(data: bytes, start: int) -> int | None:
    """End of an undefined-length value: after its Sequence Delimitation Item (FFFE,E0DD)."""
    at = data.find(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", start)
    return None if at < 0 else at + 8


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(0, len(data))]


def _flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 8, 64))):
        at = rng.randrange(len(out))
        out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def _wrong_length(data: bytes, rng: random.Random, items: list[Element]) -> bytes:
    item = rng.choice(items)
    out = bytearray(data)
    if item.header == 12:
        value = rng.choice((0, 1, 3, 0xFFFFFFFF, 0x7FFFFFFF, item.end - item.start + 1))
        struct.pack_into("<I", out, item.start + 8, value)
    else:
        value = rng.choice((0, 1, 3, 0xFFFF, item.end - item.start - 7))
        struct.pack_into("<H", out, item.start + 6, value & 0xFFFF)
    return bytes(out)


def _wrong_vr(data: bytes, rng: random.Random, items: list[Element]) -> bytes:
    item = rng.choice(items)
    out = bytearray(data)
    out[item.start + 4 : item.start + 6] = rng.choice(_ALL_VRS)
    return bytes(out)


def _duplicate(data: bytes, rng: random.Random, items: list[Element]) -> bytes:
    item = rng.choice(items)
    where = rng.choice(items)
    chunk = data[item.start : item.end]
    at = where.end if rng.random() < 0.5 else where.start
    return data[:at] + chunk + data[at:]


def _drop(data: bytes, rng: random.Random, items: list[Element]) -> bytes:
    item = rng.choice(items)
    return data[: item.start] + data[item.end :]


def _odd_size(data: bytes, rng: random.Random, items: list[Element]) -> bytes:
    targets = [e for e in items if (e.group, e.element) in _SIZE_TAGS]
    if not targets:
        return _wrong_length(data, rng, items)
    item = rng.choice(targets)
    number = rng.choice(_ODD_NUMBERS)
    if _SIZE_TAGS[(item.group, item.element)] == "US":
        value = struct.pack("<H", number & 0xFFFF)
        header = struct.pack("<HH2sH", item.group, item.element, b"US", 2)
    else:
        text = str(number).encode()
        value = text + b" " * (len(text) % 2)
        header = struct.pack("<HH2sH", item.group, item.element, b"IS", len(value))
    return data[: item.start] + header + value + data[item.end :]


def _odd_length_element(data: bytes, rng: random.Random, items: list[Element]) -> bytes:
    """An odd-length US element (the review's case) before a random element."""
    where = rng.choice(items)
    element = struct.pack("<HH2sH", 0x0028, rng.choice((0x0106, 0x0107, 0x0120)), b"US", 3)
    return data[: where.start] + element + b"\x01\x02\x03" + data[where.start :]


_BYTE_MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": _truncate,
    "flip_bits": _flip_bits,
}
_ELEMENT_MUTATIONS: dict[str, Callable[[bytes, random.Random, list[Element]], bytes]] = {
    "wrong_length": _wrong_length,
    "wrong_vr": _wrong_vr,
    "duplicate": _duplicate,
    "drop": _drop,
    "odd_size": _odd_size,
    "odd_length_element": _odd_length_element,
}
MUTATIONS = tuple(_BYTE_MUTATIONS) + tuple(_ELEMENT_MUTATIONS)


def mutate(data: bytes, seed: int, rounds: int | None = None) -> tuple[bytes, list[str]]:
    """A mutant of `data` and the names of the mutations applied (1 to 3 of them)."""
    rng = random.Random(seed)
    applied = []
    for _ in range(rounds or rng.choice((1, 1, 2, 3))):
        if not data:
            break
        _, items = elements(data)
        names = list(_BYTE_MUTATIONS) + (list(_ELEMENT_MUTATIONS) if items else [])
        name = rng.choice(names)
        if name in _BYTE_MUTATIONS:
            data = _BYTE_MUTATIONS[name](data, rng)
        else:
            data = _ELEMENT_MUTATIONS[name](data, rng, items)
        applied.append(name)
    return data, applied


# Real MR files shipped by pydicom and pydicom-data, every encoding the ingest meets.
REAL_MR_FILES = (
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_padded.dcm",
    "MR_truncated.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "MR2_J2KI.dcm",
    "emri_small.dcm",
    "emri_small_RLE.dcm",
    "emri_small_big_endian.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
)


def real_mr_sources() -> list[tuple[str, bytes]]:
    """(name, bytes) of the real MR files that are installed (pydicom-data may be absent)."""
    from pathlib import Path

    from pydicom.data import get_testdata_file

    found = []
    for name in REAL_MR_FILES:
        path = get_testdata_file(name)
        if path is not None:
            found.append((name, Path(path).read_bytes()))
    return found


def write_mutants(
    sources: list[tuple[str, bytes]], folder: str, count: int, seed: int
) -> dict[str, list[str]]:
    """Write `count` mutants of randomly chosen sources into `folder` (mutant-00000.dcm ...);
    returns file name -> (source name, mutations applied)."""
    import os

    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    made = {}
    for number in range(count):
        name, data = sources[rng.randrange(len(sources))]
        mutant, applied = mutate(data, rng.randrange(2**32))
        file_name = f"mutant-{number:05d}.dcm"
        with open(os.path.join(folder, file_name), "wb") as handle:
            handle.write(mutant)
        made[file_name] = [name, *applied]
    return made


def unaccounted_files(source: str, out: str, secret: bytes) -> list[str]:
    """Input files (relative paths) that an ingest of `source` into `out` (with report paths)
    neither indexed as an instance nor listed in ingest-report.csv with a reason."""
    import csv
    import os
    import sqlite3
    from contextlib import closing

    from lumbar.ingest.index import INDEX_FILE, path_key
    from lumbar.ingest.pipeline import REPORT_CSV

    with open(os.path.join(out, REPORT_CSV), newline="") as handle:
        reported = {row["file"] for row in csv.DictReader(handle) if row["reason"].strip()}
    with closing(sqlite3.connect(os.path.join(out, INDEX_FILE))) as db:
        indexed = {
            key for (key,) in db.execute("SELECT file_key FROM files WHERE sop_uid IS NOT NULL")
        }
    missing = []
    for folder, _, names in os.walk(source):
        for name in names:
            relative = os.path.relpath(os.path.join(folder, name), source).replace(os.sep, "/")
            if relative not in reported and path_key(relative, secret) not in indexed:
                missing.append(relative)
    return sorted(missing)


def write_damaged_study(
    files: list[tuple[str, bytes]], folder: str, rate: float, seed: int
) -> dict[str, list[str]]:
    """Copy one patient's files (relative name, bytes) into `folder`, mutating each with
    probability `rate`, so damaged files reach selection and export among intact ones;
    returns relative name -> mutations applied, for the mutated files."""
    import os

    rng = random.Random(seed)
    mutated = {}
    for name, data in files:
        target = os.path.join(folder, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if rng.random() < rate:
            data, applied = mutate(data, rng.randrange(2**32))
            mutated[name] = applied
        with open(target, "wb") as handle:
            handle.write(data)
    return mutated
