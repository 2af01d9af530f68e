"""The images the labeler shows: `lumbar ingest`'s `images.csv`, checked and indexed by patient,
and where its discs lie on each patient's sagittal image (`discs.csv`, when ingest knew them).

Each image is pinned at start-up: its real path inside the folder and its file identity
(device, inode). `Catalog.read_image` serves exactly that file or nothing, so a file swapped
after start-up for a link (or a hard link) to anything else, say the pseudonym secret, is
refused; an image rewritten since start-up is refused too, until the app is restarted.
"""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lumbar.errors import UserError
from lumbar.grading import SPINE_LEVELS, DiscLevel
from lumbar.labeler.store import PATIENT_ID

IMAGES_CSV = "images.csv"
DISCS_CSV = "discs.csv"
REQUIRED = ("patient_id", "view", "image")
# the order a radiologist reads a study in: overview first, then the levels top to bottom
VIEW_ORDER = {"sagittal_t2": 0, "myelo": 1, "axial_t2": 2}
VIEW_TITLES = {"sagittal_t2": "Sagittal T2", "myelo": "Myelography", "axial_t2": "Axial T2"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
IMAGE_SUFFIXES = tuple(IMAGE_TYPES)


@dataclass(frozen=True)
class CatalogImage:
    """One image of one patient; `key` is its URL-safe id within the patient, `path` its real
    path and `identity` the (st_dev, st_ino) of the regular file found there at start-up."""

    key: int
    view: str
    level: str | None
    path: Path
    identity: tuple[int, int]

    @property
    def title(self) -> str:
        """Caption: view name, and the disc level for axial images."""
        name = VIEW_TITLES.get(self.view, self.view)
        return f"{name} {self.level}" if self.level else name


@dataclass
class Catalog:
    """Patients (pseudonyms) and their images, all inside `root`."""

    root: Path
    patients: dict[str, list[CatalogImage]] = field(default_factory=dict)
    # patient -> disc level -> (x, y) on its sagittal image as fractions of width and height
    disc_markers: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    def image(self, patient_id: str, key: int) -> CatalogImage | None:
        """One image, or None when the patient or key is unknown."""
        images = self.patients.get(patient_id)
        if images is None or not 0 <= key < len(images):
            return None
        return images[key]

    def read_image(self, image: CatalogImage) -> bytes | None:
        """The bytes of the very file catalogued at start-up, else None.

        The path is walked from the folder one component at a time without following any
        link (O_NOFOLLOW), and the file opened must still be a regular file with the
        identity recorded at start-up; reading from that descriptor leaves no gap for a swap.
        """
        try:
            parts = image.path.relative_to(self.root).parts
        except ValueError:
            return None
        flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        opened: list[int] = []
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            opened.append(fd)
            for part in parts[:-1]:
                fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
                opened.append(fd)
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)  # no hang on a FIFO
            opened.append(fd)
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode) or (found.st_dev, found.st_ino) != image.identity:
                return None
            with os.fdopen(os.dup(fd), "rb") as handle:
                return handle.read()
        except OSError:  # gone, a link where a folder or the file was, unreadable
            return None
        finally:
            for fd in opened:
                os.close(fd)


def load_catalog(folder: Path) -> Catalog:
    """Read `folder/images.csv` as written by `lumbar ingest`.

    Raises:
        UserError: missing file or columns, non-pseudonym ids, image paths that leave the
            folder (absolute, `..`, symbolic links pointing out) or are not PNG/JPEG, or that
            are not regular files (missing, a folder, a device).
    """
    root = folder.resolve()
    path = root / IMAGES_CSV
    if not path.is_file():
        raise UserError(
            f"{path} not found; give the output folder of `lumbar ingest` as the images",
            option="images",
        )
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    bad_id: list[int] = []
    outside: list[int] = []
    bad_level: list[int] = []
    not_regular: list[int] = []
    found: dict[str, list[tuple[str, str | None, Path, tuple[int, int]]]] = {}
    for number, row in enumerate(rows, start=2):
        patient = (row.get("patient_id") or "").strip()
        if not PATIENT_ID.match(patient):
            bad_id.append(number)
            continue
        image = (row.get("image") or "").strip()
        resolved = (root / image).resolve()
        if (
            not image
            or Path(image).is_absolute()
            or not resolved.is_relative_to(root)
            or resolved.suffix.lower() not in IMAGE_SUFFIXES
        ):
            outside.append(number)
            continue
        try:
            info = os.stat(resolved)
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            not_regular.append(number)
            continue
        level_text = (row.get("level") or "").strip()
        level = None
        if level_text:
            try:
                level = DiscLevel.parse(level_text).value
            except ValueError:
                bad_level.append(number)
                continue
        view = (row.get("view") or "").strip()
        found.setdefault(patient, []).append((view, level, resolved, (info.st_dev, info.st_ino)))
    for numbers, what in (
        (bad_id, "patient_id is not a pseudonym (letters, digits, '.', '_', '-')"),
        (outside, "image path is not a PNG/JPEG file inside the images folder"),
        (not_regular, "image is not a regular file (missing, a folder or a device)"),
        (bad_level, "unknown disc level"),
    ):
        if numbers:
            shown = ", ".join(map(str, numbers[:10])) + (" ..." if len(numbers) > 10 else "")
            raise UserError(f"{path}: {what} (line {shown})")
    catalog = Catalog(root=root)
    levels = [lv.value for lv in DiscLevel]
    for patient in sorted(found):
        ordered = sorted(
            found[patient],
            key=lambda t: (
                VIEW_ORDER.get(t[0], 3),
                levels.index(t[1]) if t[1] in levels else 9,
                t[2].name,
            ),
        )
        catalog.patients[patient] = [
            CatalogImage(key=i, view=v, level=lv, path=p, identity=ident)
            for i, (v, lv, p, ident) in enumerate(ordered)
        ]
    catalog.disc_markers = _disc_markers(root, catalog)
    return catalog


def _disc_markers(root: Path, catalog: Catalog) -> dict[str, dict[str, tuple[float, float]]]:
    """Disc positions on each patient's sagittal image from `discs.csv` (optional: absent,
    unreadable rows or rows for another image are skipped; the markers then start at guessed
    heights, as before)."""
    path = root / DISCS_CSV
    if path.is_symlink() or not path.is_file():  # ingest writes a plain file, never a link
        return {}
    sagittal = {
        patient: next((im.path for im in images if im.view == "sagittal_t2"), None)
        for patient, images in catalog.patients.items()
    }
    markers: dict[str, dict[str, tuple[float, float]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            patient = (row.get("patient_id") or "").strip()
            level = (row.get("level") or "").strip()
            image = sagittal.get(patient)
            if level not in SPINE_LEVELS or image is None:
                continue
            if (root / (row.get("image") or "")).resolve() != image:
                continue
            try:
                x, y = float(row["x"]), float(row["y"])
                width, height = float(row["width"]), float(row["height"])
            except (KeyError, TypeError, ValueError):
                continue
            if width > 0 and height > 0 and 0 <= x < width and 0 <= y < height:
                # pixel centres sit at integer positions: the fraction of the pixel's centre
                markers.setdefault(patient, {})[level] = (
                    (x + 0.5) / width,
                    (y + 0.5) / height,
                )
    return markers
