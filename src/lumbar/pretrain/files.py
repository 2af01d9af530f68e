"""Finding pretraining images in large folder trees, without opening the pixels.

Pretraining sets are big (the paper's Dataset B holds 209,083 images), so discovery walks the
tree with `os.scandir` (no `stat` per file on Linux), keeps only relative path strings, and
decides what is an image by its suffix: PNG/JPEG/TIFF/BMP rasters and `.dcm`/`.dicom`/`.ima`
DICOM. Files without a suffix, or with one no reader knows, are DICOM when their 128-byte
preamble is followed by `DICM` (how PACS exports name files: `IM000001`, `1.2.840...`). The
order is sorted at every level, so the same tree always gives the same list.

Labelled sets (`class_folders`) follow the layout of the public brain-tumour collections: one
sub-folder per class under each root; several roots with the same folder names merge.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lumbar.data.imageio import DICOM_SUFFIXES, RASTER_SUFFIXES
from lumbar.errors import UserError

__all__ = [
    "ImageFiles",
    "LabelledFiles",
    "class_folders",
    "hash_fraction",
    "iter_image_files",
    "read_class_map",
    "scan_images",
    "scan_labelled",
]

#: Suffixes of files that are certainly not images (skipped without opening them).
NOT_IMAGES = frozenset(
    {".txt", ".csv", ".json", ".yaml", ".yml", ".md", ".html", ".xml", ".zip", ".gz", ".py",
     ".db", ".sqlite", ".log", ".pdf", ".npy", ".npz", ".pt", ".pth"}
)  # fmt: skip
CLASS_MAP_FILE = "classes.yaml"


def _has_dicom_preamble(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def iter_image_files(root: Path) -> Iterator[str]:
    """Yield the image files under `root` as paths relative to it ("a/b/c.png"), in sorted order.

    Hidden files and folders (a leading dot) are skipped, as are symlinked folders (no cycles).
    """
    root = Path(root)
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                subfolders.append((entry.path, rel + "/"))
                continue
            if not entry.is_file():
                continue
            suffix = os.path.splitext(entry.name)[1].lower()
            known = suffix in RASTER_SUFFIXES or suffix in DICOM_SUFFIXES
            if known or (suffix not in NOT_IMAGES and _has_dicom_preamble(entry.path)):
                yield rel
        # files of a folder first, then its sub-folders in name order (a stack: reversed)
        stack.extend(reversed(subfolders))


def hash_fraction(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by `key` and `seed`: stable splits and subsets of a stream."""
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


@dataclass
class ImageFiles:
    """Image paths found under one or more roots (absolute, in a deterministic order)."""

    paths: list[str]
    roots: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def _check_roots(roots: Sequence[str | Path]) -> list[Path]:
    if not roots:
        raise UserError("give at least one data folder", option="data")
    out = []
    for root in roots:
        path = Path(root)
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise UserError(f"data folder {path} {what}", option="data")
        out.append(path)
    return out


def scan_images(
    roots: Sequence[str | Path], *, max_images: int | None = None, seed: int = 0
) -> ImageFiles:
    """Every image under `roots` (nested to any depth), optionally a stable subset.

    Args:
        roots: folders to walk; their images are concatenated in the order given.
        max_images: keep at most this many, chosen by a hash of each relative path (spread over
            the whole tree, and the same files again when the tree grows a little).
        seed: seeds that choice.

    Raises:
        UserError: a root that is not a folder, or no image at all.
    """
    folders = _check_roots(roots)
    paths: list[str] = []
    keys: list[str] = []  # paths inside their root: the subset does not move with the folder
    for root in folders:
        for rel in iter_image_files(root):
            paths.append(str(root / rel))
            keys.append(rel)
    if not paths:
        raise UserError(
            f"no images (PNG, JPEG, TIFF, BMP or DICOM) under {', '.join(map(str, folders))}"
        )
    if max_images is not None and len(paths) > max_images:
        keep = sorted(range(len(paths)), key=lambda i: hash_fraction(keys[i], seed))[:max_images]
        paths = [paths[i] for i in sorted(keep)]
    return ImageFiles(paths, [str(r) for r in folders])


@dataclass
class LabelledFiles:
    """Images of a labelled source set with their class index, and the split of each."""

    paths: list[str]
    labels: list[int]
    keys: list[str]  # "<folder>/<path inside it>": what the split hashes (root-independent)
    class_names: list[str]
    folder_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> list[int]:
        """Images per class, in `class_names` order."""
        counts = [0] * len(self.class_names)
        for label in self.labels:
            counts[label] += 1
        return counts


def class_folders(roots: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Class folder name -> the folders of that name under each root (sorted by name)."""
    found: dict[str, list[Path]] = {}
    for root in _check_roots(roots):
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith("."):
                found.setdefault(entry.name, []).append(Path(entry.path))
    return dict(sorted(found.items()))


def read_class_map(path: Path) -> dict[str, str]:
    """A YAML mapping of folder name -> class name (e.g. `glioma: abnormal`).

    Raises:
        UserError: unreadable, not a mapping of names to names, or fewer than two classes.
    """

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read class map {Path(path).name}: {err}".splitlines()[0]) from None
    if not isinstance(data, dict) or not data:
        raise UserError(f"class map {Path(path).name} must map folder names to class names")
    mapping = {}
    for folder, name in data.items():
        if not isinstance(name, str | int) or isinstance(name, bool) or str(name).strip() == "":
            raise UserError(
                f"class map {Path(path).name}: folder {folder!r} maps to {name!r}, not a class name"
            )
        mapping[str(folder)] = str(name).strip()
    return mapping


def _class_order(names: Sequence[str]) -> list[str]:
    """Distinct class names, `normal` first (so a binary source's positive class is index 1)."""
    ordered = list(dict.fromkeys(names))
    if "normal" in ordered:
        ordered.remove("normal")
        ordered.insert(0, "normal")
    return ordered


def scan_labelled(roots: Sequence[str | Path], classes: str | Path | None = None) -> LabelledFiles:
    """The images of class folders under `roots`, labelled through an optional class map.

    Args:
        roots: folders holding one sub-folder per class (the public collections' layout).
        classes: YAML folder -> class map; None: the first root's `classes.yaml` when present,
            else each folder is its own class.

    Raises:
        UserError: no class folders, a map naming folders that do not exist (all listed), fewer
            than two classes with images, or no image at all.
    """
    folders = class_folders(roots)
    if not folders:
        raise UserError(
            f"no class folders under {', '.join(map(str, roots))}: put each class's images in "
            "its own sub-folder (e.g. glioma/, no_tumor/)"
        )
    warnings: list[str] = []
    map_path = Path(classes) if classes is not None else None
    if map_path is None:
        for root in roots:
            if (Path(root) / CLASS_MAP_FILE).is_file():
                map_path = Path(root) / CLASS_MAP_FILE
                break
    if map_path is not None:
        mapping = read_class_map(map_path)
        missing = sorted(set(mapping) - set(folders))
        if missing:
            raise UserError(
                f"class map {map_path.name} names {len(missing)} folder(s) not found under "
                f"the data folders: {', '.join(missing)} (found: {', '.join(folders) or 'none'})"
            )
        unmapped = sorted(set(folders) - set(mapping))
        if unmapped:
            warnings.append(
                f"{len(unmapped)} folder(s) not in class map {map_path.name}, left out: "
                f"{', '.join(unmapped)}"
            )
    else:
        mapping = {name: name for name in folders}
    class_names = _class_order(list(mapping.values()))
    paths: list[str] = []
    labels: list[int] = []
    keys: list[str] = []
    folder_counts: dict[str, int] = {}
    for folder, class_name in mapping.items():
        count = 0
        for location in folders[folder]:
            for rel in iter_image_files(location):
                paths.append(str(location / rel))
                labels.append(class_names.index(class_name))
                keys.append(f"{folder}/{rel}")
                count += 1
        folder_counts[folder] = count
    empty = sorted(name for name, count in folder_counts.items() if count == 0)
    if empty:
        warnings.append(f"{len(empty)} class folder(s) hold no images: {', '.join(empty)}")
    present = sorted({class_names[label] for label in labels})
    if not paths:
        raise UserError(f"the class folders under {', '.join(map(str, roots))} hold no images")
    if len(present) < 2:
        raise UserError(
            f"only one class has images ({present[0]}, {len(paths)} images); supervised "
            "pretraining needs at least two (check the folders and the class map)"
        )
    result = LabelledFiles(paths, labels, keys, class_names, folder_counts, warnings)
    absent = [name for name, n in zip(class_names, result.class_counts(), strict=True) if n == 0]
    if absent:
        result.warnings.append(f"class(es) without images: {', '.join(absent)}")
    return result
