"""Streaming a list of image files into pretraining batches, one file decoded at a time.

Nothing is cached: a pretraining set may hold hundreds of thousands of images, so each
DataLoader worker decodes the files of its batches (`lumbar.data.imageio.read_uint8`: PNG/JPEG
8/16-bit, RGB or gray, DICOM) and applies the augmentation. A file that cannot be decoded is
left out of its batch and reported in the batch (`Batch.failed`); the training loop counts such
files, reports them once, and leaves them out of later epochs.

Augmentation draws depend only on (seed, epoch, image, view), so a run is the same for any
number of workers, and `--resume` continues it exactly.

`SimCLRAugmentation` is the set of MRI-suited views for contrastive learning: random resized
crop, flips, a small rotation, brightness / contrast / gamma, blur and noise, on gray pixels
(no colour jitter: MRI has no colour).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lumbar.data.augment import Augmentation
from lumbar.data.imageio import read_uint8
from lumbar.data.sampler import EpochBatchSampler
from lumbar.models.preprocessing import Preprocessing

__all__ = [
    "Batch",
    "ImageFileDataset",
    "SimCLRAugmentation",
    "decode_gray",
    "make_stream_loader",
    "plain_batches",
]

_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling


def decode_gray(path: str) -> np.ndarray:
    """One image file as 8-bit gray pixels (H, W); RGB is averaged as PIL's "L" mode does."""
    pixels = read_uint8(path)
    if pixels.ndim == 3:
        from PIL import Image

        pixels = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).convert("L"))
    return pixels


def _check_range(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    a, b = pair
    if not (low <= a <= b <= high):
        raise ValueError(f"{name} must be a pair low <= high within [{low}, {high}], got {pair!r}")


@dataclass(frozen=True)
class SimCLRAugmentation:
    """Two random views of an MRI slice for SimCLR (Chen et al. 2020), adapted to gray MRI.

    Args:
        crop_scale: area fraction of the random resized crop (SimCLR uses 0.08-1; MRI slices
            are mostly background-free anatomy, so a milder 0.35-1 keeps the structure).
        crop_ratio: aspect ratio range of the crop.
        hflip, vflip: flip probabilities.
        rotation: maximal rotation in degrees (uniform in +-rotation).
        brightness, contrast, gamma: factor ranges, each applied with probability `p_intensity`.
        blur_sigma: Gaussian blur sigma range in output pixels, applied with `p_blur`.
        noise_std: Gaussian noise std range (fraction of the 0-255 range), with `p_noise`.
    """

    crop_scale: tuple[float, float] = (0.35, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    vflip: float = 0.5
    rotation: float = 10.0
    brightness: tuple[float, float] = (0.6, 1.4)
    contrast: tuple[float, float] = (0.6, 1.4)
    gamma: tuple[float, float] = (0.7, 1.5)
    p_intensity: float = 0.8
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    p_blur: float = 0.5
    noise_std: tuple[float, float] = (0.0, 0.05)
    p_noise: float = 0.5

    def __post_init__(self) -> None:
        _check_range("crop_scale", self.crop_scale, 1e-3, 1.0)
        _check_range("crop_ratio", self.crop_ratio, 0.1, 10.0)
        for name in ("brightness", "contrast", "gamma"):
            _check_range(name, getattr(self, name), 0.0, 10.0)
        _check_range("blur_sigma", self.blur_sigma, 0.0, 20.0)
        _check_range("noise_std", self.noise_std, 0.0, 1.0)
        for name in ("hflip", "vflip", "p_intensity", "p_blur", "p_noise"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if not 0.0 <= self.rotation <= 180.0:
            raise ValueError(f"rotation must be in [0, 180] degrees, got {self.rotation!r}")

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready record (for the run's config.json)."""

        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def view(
        self, pixels: np.ndarray, size: tuple[int, int], rng: np.random.Generator
    ) -> np.ndarray:
        """One augmented view, float32 (H, W) in 0..255, of gray `pixels` at `size` (h, w)."""
        from PIL import Image, ImageFilter

        height, width = pixels.shape
        area = height * width
        for _ in range(10):  # torchvision's RandomResizedCrop: 10 tries, then the whole image
            target = area * rng.uniform(*self.crop_scale)
            ratio = math.exp(
                rng.uniform(math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]))
            )
            w = round(math.sqrt(target * ratio))
            h = round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                break
        else:
            top, left, h, w = 0, 0, height, width
        # resize first: rotating and blurring at the output size costs the same for any source
        image = Image.fromarray(pixels[top : top + h, left : left + w])
        image = image.resize((size[1], size[0]), resample=2, reducing_gap=2.0)
        if self.rotation > 0:
            image = image.rotate(float(rng.uniform(-self.rotation, self.rotation)), resample=2)
        if rng.random() < self.p_blur:
            image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(*self.blur_sigma))))
        x = np.asarray(image, dtype=np.float32)
        if rng.random() < self.hflip:
            x = x[:, ::-1]
        if rng.random() < self.vflip:
            x = x[::-1, :]
        if rng.random() < self.p_intensity:
            x = x * rng.uniform(*self.brightness)
            mean = float(x.mean())
            x = (x - mean) * rng.uniform(*self.contrast) + mean
            x = np.clip(x, 0.0, 255.0)
            x = 255.0 * (x / 255.0) ** rng.uniform(*self.gamma)
        if rng.random() < self.p_noise:
            x = x + rng.normal(0.0, 255.0 * rng.uniform(*self.noise_std), size=x.shape)
        return np.clip(x, 0.0, 255.0).astype(np.float32)


@dataclass
class Batch:
    """A collated batch: images (N, C, H, W) or (N, V, C, H, W) views, labels, and failures."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    failed: list[int]


class ImageFileDataset(Dataset):
    """Files as backbone inputs: decoded, resized (or cut into views) and normalised on access.

    Args:
        paths: image files.
        preprocessing: the backbone's input (size, channels, normalisation; gray is replicated).
        labels: class per file, or None (unlabelled: label -1).
        augmentation: the paper's `Augmentation` (labelled runs), applied after resizing.
        views: a `SimCLRAugmentation` makes each item two views (N, 2, C, H, W).
        seed: seeds the augmentation draws.

    Keys are `(epoch, index)` pairs (the loader sends them). An item is `(index, image, label)`,
    with image None when the file cannot be decoded.
    """

    def __init__(
        self,
        paths: Sequence[str],
        preprocessing: Preprocessing,
        *,
        labels: Sequence[int] | None = None,
        augmentation: Augmentation | None = None,
        views: SimCLRAugmentation | None = None,
        seed: int = 0,
    ) -> None:
        self.paths = list(paths)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.preprocessing = preprocessing
        self.augmentation = augmentation
        self.views = views
        self.seed = seed
        scale, offset = preprocessing.affine()
        self._scale = torch.tensor(scale, dtype=torch.float32).view(-1, 1, 1)
        self._offset = torch.tensor(offset, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def _normalise(self, gray: np.ndarray) -> torch.Tensor:
        """float (H, W) 0..255 -> (C, H, W) backbone input (gray replicated to C channels)."""
        x = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32))[None]
        return x * self._scale + self._offset

    def _resized(self, pixels: np.ndarray) -> np.ndarray:
        from PIL import Image

        height, width = self.preprocessing.input_size
        image = Image.fromarray(pixels)
        if image.size != (width, height):
            resample = _RESAMPLE[self.preprocessing.interpolation]
            image = image.resize((width, height), resample=resample)
        return np.asarray(image)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, torch.Tensor | None, int]:
        epoch, index = key
        label = -1 if self.labels is None else int(self.labels[index])
        try:
            pixels = decode_gray(self.paths[index])
            if pixels.size == 0:
                raise ValueError("empty image")
        except Exception:  # any decoder error means an unreadable file: skipped and counted
            return index, None, label
        if self.views is not None:
            size = self.preprocessing.input_size
            views = []
            for v in range(2):
                rng = np.random.default_rng([self.seed, epoch, index, v])
                views.append(self._normalise(self.views.view(pixels, size, rng)))
            return index, torch.stack(views), label
        resized = self._resized(pixels)[None, None].copy()  # (1, 1, H, W) for the flips
        factor = 1.0
        if self.augmentation is not None:
            draw = self.augmentation.draw(self.seed, np.array([epoch]), np.array([index]))
            self.augmentation.apply_flips(resized, draw)
            if draw.brightness is not None:
                factor = float(draw.brightness[0])
        gray = resized[0, 0].astype(np.float32)
        if factor != 1.0:
            gray = np.clip(gray * factor, 0.0, 255.0)
        return index, self._normalise(gray), label


def collate(items: list[tuple[int, torch.Tensor | None, int]]) -> Batch:
    """Stack the decodable items of a batch; list the indices of the others in `failed`."""
    good = [item for item in items if item[1] is not None]
    failed = [item[0] for item in items if item[1] is None]
    images = torch.stack([item[1] for item in good]) if good else torch.zeros(0)  # type: ignore[misc]
    return Batch(
        images=images,
        labels=torch.tensor([item[2] for item in good], dtype=torch.int64),
        indices=torch.tensor([item[0] for item in good], dtype=torch.int64),
        failed=failed,
    )


def make_stream_loader(
    dataset: ImageFileDataset, sampler: EpochBatchSampler, workers: int
) -> DataLoader:
    """A DataLoader decoding in `workers` processes (0: in this process), batches in order."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )


def plain_batches(
    dataset: ImageFileDataset,
    indices: Sequence[int],
    batch_size: int,
    workers: int,
    device: torch.device,
) -> Iterator[torch.Tensor]:
    """The images `indices` of `dataset` as input batches on `device`, in order (unreadable
    files left out): for passes that need no labels, e.g. BatchNorm recalibration."""
    sampler = EpochBatchSampler(indices, batch_size, shuffle=False)
    for batch in make_stream_loader(dataset, sampler, workers):
        if len(batch.indices):
            yield batch.images.to(device)
