"""A backbone's input preprocessing, declared by its weights: the one definition in `lumbar`.

Normalisation belongs to the weights, not to the call site (DESIGN.md, "Weights"): ImageNet
weights of torchvision expect RGB in [0, 1] standardised with the ImageNet mean/std, Caffe-style
weights expect BGR in [0, 255] with the mean subtracted, the EfficientNet-Lite0 TensorFlow
weights expect (x - 127) / 128. The weights registry (`lumbar.models`) builds one `Preprocessing`
per weight source; the data loader (`lumbar.data.dataset`) takes it as an argument and never
hard-codes a mean or a size.

Example:
    >>> p = Preprocessing(input_size=(224, 224), channels="rgb", pixel_range=1.0,
    ...                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    >>> p.num_channels
    3
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Channels = Literal["rgb", "bgr", "gray"]
Interpolation = Literal["bilinear", "bicubic", "nearest", "lanczos"]

CHANNEL_ORDERS: tuple[str, ...] = ("rgb", "bgr", "gray")
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "lanczos")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a backbone's input tensor.

    The loader resizes the (ROI-cropped) image to `input_size`, arranges its channels as
    `channels`, scales 8-bit pixel values v in 0..255 to `v / 255 * pixel_range`, then computes
    `(x - mean[c]) / std[c]` per channel.

    Args:
        input_size: (height, width) of the network input, in pixels.
        channels: "rgb" or "bgr" (three channels; grayscale MRI is replicated) or "gray" (one).
        pixel_range: the value of a white pixel before standardisation: 1.0 (torchvision) or
            255.0 (Caffe, TensorFlow-style).
        mean: per-channel mean, in the units of `pixel_range`, in `channels` order.
        std: per-channel standard deviation, same units and order; all > 0.
        interpolation: resampling filter for the resize.
    """

    input_size: tuple[int, int] = (224, 224)
    channels: Channels = "rgb"
    pixel_range: float = 1.0
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: Interpolation = "bilinear"

    def __post_init__(self) -> None:
        size = tuple(self.input_size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(
                f"input_size must be two positive integers (height, width), got {self.input_size!r}"
            )
        object.__setattr__(self, "input_size", size)
        if self.channels not in CHANNEL_ORDERS:
            raise ValueError(
                f"channels must be one of {', '.join(CHANNEL_ORDERS)}, got {self.channels!r}"
            )
        if not (math.isfinite(self.pixel_range) and self.pixel_range > 0):
            raise ValueError(f"pixel_range must be a positive number, got {self.pixel_range!r}")
        mean = tuple(float(m) for m in self.mean)
        std = tuple(float(s) for s in self.std)
        for name, values in (("mean", mean), ("std", std)):
            if len(values) != self.num_channels:
                raise ValueError(
                    f"{name} has {len(values)} values but channels={self.channels!r} needs "
                    f"{self.num_channels}"
                )
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{name} must be finite, got {values!r}")
        if not all(s > 0 for s in std):
            raise ValueError(f"std values must be > 0, got {std!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )

    @property
    def num_channels(self) -> int:
        """1 for "gray", 3 for "rgb" and "bgr"."""
        return 1 if self.channels == "gray" else 3

    def affine(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (scale, offset) such that `input = uint8_value * scale + offset`.

        Folding the pixel range, mean and std into one multiply-add lets the loader normalise a
        whole batch in a single pass.
        """
        scale = tuple(self.pixel_range / 255.0 / s for s in self.std)
        offset = tuple(-m / s for m, s in zip(self.mean, self.std, strict=True))
        return scale, offset

    def cache_key(self) -> str:
        """The fields that change the cached uint8 image (not the normalisation)."""
        h, w = self.input_size
        return f"{h}x{w}-{self.channels}-{self.interpolation}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, as stored in a weights file's `<file>.json` sidecar."""
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Build from a dict such as `to_dict()` writes; unknown keys are a ValueError."""
        known = {"input_size", "channels", "pixel_range", "mean", "std", "interpolation"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing field(s): {', '.join(unknown)}")
        kwargs = dict(data)
        if "input_size" in kwargs:
            kwargs["input_size"] = tuple(int(v) for v in kwargs["input_size"])
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        if "pixel_range" in kwargs:
            kwargs["pixel_range"] = float(kwargs["pixel_range"])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: Path) -> Preprocessing:
        """Read a JSON file holding a `to_dict()` object (or one under a "preprocessing" key)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("preprocessing"), dict):
            data = data["preprocessing"]
        return cls.from_dict(data)


#: torchvision's ImageNet weights: RGB in [0, 1], ImageNet mean/std.
IMAGENET = Preprocessing()
#: Caffe-style weights (e.g. the original VGG16 release): BGR in [0, 255], mean subtracted.
CAFFE = Preprocessing(
    channels="bgr", pixel_range=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0)
)
#: TensorFlow-trained weights (e.g. EfficientNet-Lite0): (x - 127) / 128 on [0, 255].
TF_127 = Preprocessing(pixel_range=255.0, mean=(127.0,) * 3, std=(128.0,) * 3)
