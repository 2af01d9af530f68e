"""A PyTorch dataset and loader over a manifest, with a decode cache and seeded augmentation.

Each image is decoded once (PNG/JPEG 8/16-bit, grayscale or RGB, or DICOM; see
`lumbar.data.imageio`), cropped to the ROI, resized to the backbone's input size and stored in
a uint8 cache: shared memory (`cache="memory"`, visible to every loader worker) or a memory-map
file in `cache_dir` (`cache="mmap"`, also reused by later runs while the images are unchanged).
Epochs after the first only read the cache, flip, and apply brightness and normalisation as one
multiply-add per batch, so data loading does not limit training.

Augmentation draws depend only on (seed, epoch, image), see `lumbar.data.augment`. The loader
built by `make_loader` passes the epoch with every index, so results do not depend on the
number of workers.

Example:
    >>> from lumbar.models.preprocessing import IMAGENET
    >>> train = ManifestDataset("ds/manifest.csv", IMAGENET, target="disc_abnormal",
    ...                         split="train", roi="grid", augmentation=Augmentation.paper())
    >>> loader = make_loader(train, batch_size=64, shuffle=True)
    >>> for images, labels in loader: ...   # images: (64, 3, 224, 224) float32
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info

from lumbar.data.augment import Augmentation
from lumbar.data.imageio import read_uint8
from lumbar.data.manifest import SPLITS, Manifest, read_manifest
from lumbar.data.roi import ROI, parse_roi
from lumbar.data.sampler import EpochBatchSampler
from lumbar.data.targets import UNLABELLED, get_target
from lumbar.errors import UserError
from lumbar.models.preprocessing import Preprocessing

CacheMode = Literal["memory", "mmap", "none"]
Color = Literal["gray", "rgb"]
CACHE_FORMAT = 1  # bump when the cached pixels would change for the same inputs

_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling


def load_image(
    path: Path, roi: ROI, preprocessing: Preprocessing, color: Color = "gray"
) -> np.ndarray:
    """Decode, crop, and resize one image to the cached form: (C, H, W) uint8.

    C is 1 when `color` is "gray" or the backbone takes one channel (a 3-channel backbone gets
    the gray channel replicated at batch time), else 3 in the backbone's channel order.
    """
    from PIL import Image

    pixels = roi(read_uint8(path))
    image = Image.fromarray(np.ascontiguousarray(pixels))
    gray = color == "gray" or preprocessing.num_channels == 1
    wanted = "L" if gray else "RGB"
    if image.mode != wanted:
        image = image.convert(wanted)
    height, width = preprocessing.input_size
    if image.size != (width, height):
        image = image.resize((width, height), resample=_RESAMPLE[preprocessing.interpolation])
    array = np.asarray(image)
    if array.ndim == 2:
        return array[None].copy()
    array = array.transpose(2, 0, 1)
    if preprocessing.channels == "bgr":
        array = array[::-1]
    return np.ascontiguousarray(array)


class ImageCache:
    """N decoded images of one shape, with a "filled" flag each, shared across processes.

    `memory` uses torch shared-memory tensors (shared with forked and spawned workers); `mmap`
    uses two files `<key>.u8` and `<key>.filled` in `folder`. Two workers decoding the same image
    at once write identical bytes, so no lock is needed; the flag is set after the pixels.
    """

    def __init__(
        self, size: int, shape: tuple[int, int, int], mode: CacheMode, path: Path | None = None
    ) -> None:
        self.size = size
        self.shape = shape
        self.mode = mode
        self.path = path
        self._tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        if mode == "memory":
            self._tensors = (
                torch.zeros((size, *shape), dtype=torch.uint8).share_memory_(),
                torch.zeros(size, dtype=torch.uint8).share_memory_(),
            )
        elif mode == "mmap":
            if path is None:
                raise ValueError("an mmap cache needs a path")
            self._create_files()
        else:
            raise ValueError(f"cache mode must be memory or mmap, got {mode!r}")
        self._attach()

    def _create_files(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix, nbytes in (
            (".u8", self.size * int(np.prod(self.shape))),
            (".filled", self.size),
        ):
            target = self.path.with_suffix(suffix)
            if target.is_file() and target.stat().st_size == nbytes:
                continue
            tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
            with open(tmp, "wb") as handle:
                handle.truncate(nbytes)
            os.replace(tmp, target)

    def _attach(self) -> None:
        if self._tensors is not None:
            self.data = self._tensors[0].numpy()
            self.filled = self._tensors[1].numpy()
        else:
            assert self.path is not None
            self.data = np.memmap(
                self.path.with_suffix(".u8"), np.uint8, "r+", shape=(self.size, *self.shape)
            )
            self.filled = np.memmap(
                self.path.with_suffix(".filled"), np.uint8, "r+", shape=(self.size,)
            )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("data", None)
        state.pop("filled", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._attach()

    def complete(self) -> bool:
        """Whether every image is in the cache."""
        return bool(self.filled.all())


class _Batch(list):
    """Per-sample views of one batch; `collate_batch` returns the batch without copying."""

    images: torch.Tensor
    labels: torch.Tensor


def collate_batch(samples: Any) -> Any:
    """The collate function of `make_loader`: batched fetches pass through, others are stacked."""
    if isinstance(samples, _Batch):
        return samples.images, samples.labels
    return default_collate(samples)


class ManifestDataset(Dataset):
    """The images of a manifest as backbone inputs, with labels of one target.

    Args:
        manifest: a `Manifest` or the path of a manifest CSV (validated on reading).
        preprocessing: the backbone's input definition (size, channels, normalisation).
        target: a training target name (`lumbar.data.targets`); rows without its grade are left
            out. None: every row, label -1.
        split: keep rows of this split (or splits); None keeps all.
        roi: an ROI or its spelling (`grid`, `center:0.8`, `none`), applied before resizing.
        augmentation: an `Augmentation`, or None for none (validation, test).
        cache: "memory", "mmap" (needs `cache_dir`) or "none" (decode on every access).
        cache_dir: folder for the memory-map cache files.
        color: "gray" treats sources as grayscale MRI (1 cached channel); "rgb" keeps colour.
        seed: seeds the augmentation (and `make_loader`'s shuffling).
        decode_threads: threads decoding images missing from the cache (PIL releases the GIL).

    Items are `(image, label)`: a float32 (C, H, W) tensor and an int64 scalar tensor. A key is
    an index, or an `(epoch, index)` pair as `make_loader` sends. Prefer `make_loader`: with a
    plain DataLoader, plain indices use `self.epoch`, which `set_epoch` changes only in the
    calling process, not in persistent worker processes (so augmentation would repeat).
    """

    def __init__(
        self,
        manifest: Manifest | Path | str,
        preprocessing: Preprocessing,
        *,
        target: str | None = None,
        split: str | Sequence[str] | None = None,
        roi: ROI | str | None = None,
        augmentation: Augmentation | None = None,
        cache: CacheMode = "memory",
        cache_dir: Path | str | None = None,
        color: Color = "gray",
        seed: int = 0,
        decode_threads: int = 1,
    ) -> None:
        if not isinstance(manifest, Manifest):
            manifest = read_manifest(manifest)
        if color not in ("gray", "rgb"):
            raise ValueError(f"color must be 'gray' or 'rgb', got {color!r}")
        if cache not in ("memory", "mmap", "none"):
            raise ValueError(f"cache must be 'memory', 'mmap' or 'none', got {cache!r}")
        if cache == "mmap" and cache_dir is None:
            raise ValueError("cache='mmap' needs cache_dir")
        if decode_threads < 1:
            raise ValueError(f"decode_threads must be >= 1, got {decode_threads}")
        rows = np.arange(len(manifest))
        if split is not None:
            wanted = {split} if isinstance(split, str) else set(split)
            unknown = sorted(wanted - set(SPLITS))
            if unknown:
                raise ValueError(f"unknown split(s) {unknown}; expected {', '.join(SPLITS)}")
            if not manifest.has_column("split"):
                raise UserError(
                    f"{manifest.path}: no split column; run `lumbar dataset split` first"
                )
            values = manifest.column("split")
            rows = np.array([i for i in rows if values[i] in wanted], dtype=np.int64)
        self.target = get_target(target) if target is not None else None
        if self.target is not None:
            labels = self.target.encode(manifest.grades(self.target.column))[rows]
            rows = rows[labels >= 0]
            labels = labels[labels >= 0]
        else:
            labels = np.full(len(rows), UNLABELLED, dtype=np.int64)
        if len(rows) == 0:
            what = f" with a {self.target.column} grade" if self.target else ""
            where = f" in split {split}" if split is not None else ""
            raise UserError(f"{manifest.path}: no rows{what}{where}")
        self.manifest = manifest.subset(rows.tolist())
        self.labels = labels.astype(np.int64)
        self.paths = [self.manifest.image_path(i) for i in range(len(self.manifest))]
        self.preprocessing = preprocessing
        self.roi = parse_roi(roi)
        unplaced = []
        for i, row in enumerate(self.manifest.rows):
            try:
                self.roi.for_row(row)
            except ValueError as err:
                unplaced.append((i, str(err)))
        if unplaced:
            raise self.manifest.error([i for i, _ in unplaced], unplaced[0][1])
        self.augmentation = augmentation
        self.color: Color = color
        self.seed = int(seed)
        self.decode_threads = int(decode_threads)
        self.epoch = 0
        channels = 1 if color == "gray" or preprocessing.num_channels == 1 else 3
        self.cached_shape = (channels, *preprocessing.input_size)
        scale, offset = preprocessing.affine()
        self._scale = torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1)
        self._offset = torch.tensor(offset, dtype=torch.float32).view(1, -1, 1, 1)
        self.cache: ImageCache | None = None
        if cache != "none":
            path = Path(cache_dir) / self.cache_key() if cache == "mmap" else None
            self.cache = ImageCache(len(self.paths), self.cached_shape, cache, path)

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for keys that are plain indices (make_loader sends its own)."""
        self.epoch = int(epoch)

    def cache_key(self) -> str:
        """A hash of everything that determines the cached pixels (files, ROI, size, colour)."""
        digest = hashlib.sha256()
        head = [CACHE_FORMAT, self.roi.spec, self.preprocessing.cache_key(), self.color]
        digest.update(json.dumps(head).encode())
        for path in self.paths:
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return "lumbar-cache-" + digest.hexdigest()[:24]

    def class_counts(self) -> np.ndarray:
        """Images per class of the target (for class weights or samplers)."""
        if self.target is None:
            return np.array([len(self)])
        return np.bincount(self.labels, minlength=self.target.num_classes)

    def describe(self) -> dict[str, Any]:
        """What a run needs to record about its data."""
        return {
            "manifest": str(self.manifest.path),
            "images": len(self),
            "target": self.target.name if self.target else None,
            "class_counts": self.class_counts().tolist(),
            "roi": self.roi.spec,
            "preprocessing": self.preprocessing.to_dict(),
            "augmentation": repr(self.augmentation) if self.augmentation else None,
            "color": self.color,
            "seed": self.seed,
        }

    def _load(self, index: int) -> np.ndarray:
        try:
            roi = self.roi.for_row(self.manifest.rows[index])
        except ValueError as err:
            raise self.manifest.error([index], str(err)) from None
        try:
            return load_image(self.paths[index], roi, self.preprocessing, self.color)
        except Exception as err:
            raise self.manifest.error(
                [index], f"image could not be decoded ({type(err).__name__})"
            ) from None

    def fetch_uint8(self, indices: np.ndarray) -> np.ndarray:
        """Cached (N, C, H, W) uint8 images at `indices` (a copy), decoding the missing ones."""
        if self.cache is None:
            return np.stack([self._load(int(i)) for i in indices])
        missing = np.unique(indices[self.cache.filled[indices] == 0])
        if len(missing):
            if self.decode_threads > 1 and len(missing) > 1:
                with ThreadPoolExecutor(self.decode_threads) as pool:
                    decoded = list(pool.map(self._load, missing.tolist()))
            else:
                decoded = [self._load(int(i)) for i in missing]
            for i, pixels in zip(missing, decoded, strict=True):
                self.cache.data[i] = pixels
                self.cache.filled[i] = 1
        return self.cache.data[indices]

    def warm_cache(self) -> None:
        """Decode every image not yet cached (optional: the first epoch does it lazily)."""
        self.fetch_uint8(np.arange(len(self)))

    def _keys(self, keys: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        epochs = np.empty(len(keys), dtype=np.int64)
        indices = np.empty(len(keys), dtype=np.int64)
        for n, key in enumerate(keys):
            if isinstance(key, tuple):
                epochs[n], indices[n] = key
            else:
                epochs[n], indices[n] = self.epoch, key
        if len(indices) and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} images")
        return epochs, indices % len(self)

    def __getitems__(self, keys: Sequence[Any]) -> _Batch:
        """A batch: the fast path that DataLoader uses when fetching many indices at once."""
        epochs, indices = self._keys(keys)
        pixels = self.fetch_uint8(indices)
        factors = None
        if self.augmentation is not None:
            draw = self.augmentation.draw(self.seed, epochs, indices)
            self.augmentation.apply_flips(pixels, draw)
            factors = draw.brightness
        images = self._normalise(torch.from_numpy(pixels), factors)
        labels = torch.from_numpy(self.labels[indices])
        batch = _Batch(zip(images, labels, strict=True))
        batch.images = images
        batch.labels = labels
        return batch

    def __getitem__(self, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.__getitems__([key])[0]
        return image.clone(), label.clone()

    def _normalise(self, pixels: torch.Tensor, factors: np.ndarray | None) -> torch.Tensor:
        """uint8 (N, c, H, W) -> float32 (N, C, H, W): brightness, pixel range, mean/std."""
        n, _, height, width = pixels.shape
        channels = self.preprocessing.num_channels
        values = pixels.float()
        scale = self._scale
        if factors is not None:
            f = torch.from_numpy(factors.astype(np.float32)).view(n, 1, 1, 1)
            if float(factors.max(initial=0.0)) > 1.0:  # PIL clips brightened pixels at 255
                values = values.mul_(f).clamp_(max=255.0)
            else:
                scale = scale * f
        # One fused pass; a 1-channel cache broadcasts to a 3-channel backbone here.
        out = _new_batch_tensor((n, channels, height, width))
        torch.addcmul(self._offset, values, scale, out=out)
        return out


def _new_batch_tensor(shape: tuple[int, int, int, int]) -> torch.Tensor:
    """An empty float32 batch; in a loader worker, allocated in shared memory directly.

    A worker's batch travels to the main process through shared memory; allocating it there
    from the start saves a copy of every batch (as torch's own `default_collate` does).
    """
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    numel = shape[0] * shape[1] * shape[2] * shape[3]
    storage = torch.UntypedStorage._new_shared(numel * 4)
    return torch.empty(0, dtype=torch.float32).set_(storage).view(shape)


def make_loader(
    dataset: ManifestDataset,
    batch_size: int = 64,
    *,
    shuffle: bool = False,
    drop_last: bool = False,
    num_workers: int = 0,
    seed: int | None = None,
    epoch: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader that fetches whole batches at once and passes epochs to the dataset.

    Args:
        dataset: the dataset.
        batch_size: images per batch (the paper: 64).
        shuffle: reshuffle every epoch (seeded by `seed` and the epoch).
        drop_last: drop a last, smaller batch (unless it is the only one).
        num_workers: loader processes; 0 loads in the calling process (after the first epoch
            the cache makes that fast enough on few cores).
        seed: shuffling seed; default the dataset's seed.
        epoch: the first epoch (to resume); `loader.batch_sampler.set_epoch` changes it later.
        pin_memory: pin batches for faster copies to a GPU.
    """
    sampler = EpochBatchSampler(
        len(dataset),
        batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        seed=dataset.seed if seed is None else seed,
        epoch=epoch,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_batch,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
