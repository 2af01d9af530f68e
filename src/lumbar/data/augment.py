"""The paper's augmentation (brightness in [0.1, 0.7], horizontal and vertical flips), seeded.

Random draws are a pure function of (seed, epoch, image index, transform): a counter-based
hash, not a stateful generator. An image therefore gets the same augmentation in a given epoch
whatever the batch size, the shuffling, or the number of loader workers, so a run is
reproducible from its seed alone.

Brightness follows Keras `ImageDataGenerator(brightness_range=(low, high))`, which the paper
used: a factor drawn uniformly from [low, high] per image, applied as PIL's
`ImageEnhance.Brightness` (a blend with black: value x factor, clipped to 255). Note that a
range within [0, 1], such as the paper's [0.1, 0.7], only ever darkens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


def counter_uniform(seed: int, epochs: np.ndarray, indices: np.ndarray, stream: int) -> np.ndarray:
    """Uniform floats in [0, 1), one per (epoch, index), reproducible from the arguments alone."""
    epochs = np.asarray(epochs, dtype=np.uint64)
    indices = np.asarray(indices, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = _splitmix64(np.full(indices.shape, np.uint64(seed & 0xFFFFFFFFFFFFFFFF)))
        x = _splitmix64(x ^ epochs)
        x = _splitmix64(x ^ indices)
        x = _splitmix64(x ^ np.uint64(stream))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class RandomBrightness:
    """Multiply pixel values by a factor drawn uniformly from [low, high] (Keras semantics).

    Args:
        low, high: factor range, 0 <= low <= high; 1 means unchanged.
    """

    stream = 1

    def __init__(self, low: float = 0.1, high: float = 0.7) -> None:
        for name, value in (("low", low), ("high", high)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"brightness {name} must be a finite number >= 0, got {value!r}")
        if low > high:
            raise ValueError(f"brightness range must have low <= high, got [{low}, {high}]")
        self.low = float(low)
        self.high = float(high)

    def factors(self, u: np.ndarray) -> np.ndarray:
        """Factors for uniforms `u` in [0, 1)."""
        return self.low + (self.high - self.low) * np.asarray(u, dtype=np.float64)

    def __repr__(self) -> str:
        return f"RandomBrightness(low={self.low:g}, high={self.high:g})"


class RandomFlip:
    """Mirror an image left-right ("horizontal") or top-bottom ("vertical") with probability p.

    Args:
        axis: "horizontal" or "vertical".
        p: probability in [0, 1].
    """

    def __init__(self, axis: Literal["horizontal", "vertical"], p: float = 0.5) -> None:
        if axis not in ("horizontal", "vertical"):
            raise ValueError(f"flip axis must be 'horizontal' or 'vertical', got {axis!r}")
        if not (isinstance(p, int | float) and math.isfinite(p) and 0 <= p <= 1):
            raise ValueError(f"flip probability must be in [0, 1], got {p!r}")
        self.axis = axis
        self.p = float(p)
        self.stream = 2 if axis == "horizontal" else 3

    def mask(self, u: np.ndarray) -> np.ndarray:
        """Which images to flip, for uniforms `u`."""
        return np.asarray(u) < self.p

    def apply(self, batch: np.ndarray, mask: np.ndarray) -> None:
        """Flip the masked images of an (N, C, H, W) array in place."""
        if not mask.any():
            return
        if self.axis == "horizontal":
            batch[mask] = batch[mask][..., ::-1]
        else:
            batch[mask] = batch[mask][..., ::-1, :]

    def __repr__(self) -> str:
        return f"RandomFlip({self.axis!r}, p={self.p:g})"


@dataclass(frozen=True)
class AugmentationDraw:
    """The random parameters of one batch: brightness factors (or None) and flip masks."""

    brightness: np.ndarray | None
    hflip: np.ndarray
    vflip: np.ndarray


class Augmentation:
    """The paper's augmentation, each part switchable (None disables it).

    Args:
        brightness: a `RandomBrightness`, a (low, high) pair, or None.
        hflip: probability of a horizontal flip (True = 0.5), or None/False.
        vflip: probability of a vertical flip (True = 0.5), or None/False.

    Example:
        >>> Augmentation.paper()
        Augmentation(RandomBrightness(low=0.1, high=0.7), RandomFlip('horizontal', p=0.5), \
RandomFlip('vertical', p=0.5))
    """

    def __init__(
        self,
        brightness: RandomBrightness | tuple[float, float] | None = (0.1, 0.7),
        hflip: float | bool | None = True,
        vflip: float | bool | None = True,
    ) -> None:
        if brightness is not None and not isinstance(brightness, RandomBrightness):
            try:
                low, high = brightness
            except (TypeError, ValueError):
                raise ValueError(
                    f"brightness must be a (low, high) pair or None, got {brightness!r}"
                ) from None
            brightness = RandomBrightness(low, high)
        self.brightness = brightness
        self.hflip = _flip("horizontal", hflip)
        self.vflip = _flip("vertical", vflip)

    @classmethod
    def paper(cls) -> Augmentation:
        """Brightness factor in [0.1, 0.7] and both flips with p = 0.5 (section 3.5, Keras)."""
        return cls()

    @property
    def max_brightness(self) -> float:
        """The largest brightness factor (1 when brightness is off)."""
        return self.brightness.high if self.brightness else 1.0

    def draw(self, seed: int, epochs: np.ndarray, indices: np.ndarray) -> AugmentationDraw:
        """The parameters for images `indices` in `epochs` (arrays of equal length)."""
        none = np.zeros(len(indices), dtype=bool)
        return AugmentationDraw(
            brightness=(
                self.brightness.factors(
                    counter_uniform(seed, epochs, indices, self.brightness.stream)
                )
                if self.brightness
                else None
            ),
            hflip=(
                self.hflip.mask(counter_uniform(seed, epochs, indices, self.hflip.stream))
                if self.hflip
                else none
            ),
            vflip=(
                self.vflip.mask(counter_uniform(seed, epochs, indices, self.vflip.stream))
                if self.vflip
                else none
            ),
        )

    def apply_flips(self, batch: np.ndarray, draw: AugmentationDraw) -> None:
        """Flip the images of an (N, C, H, W) uint8 array in place as `draw` says."""
        if self.hflip:
            self.hflip.apply(batch, draw.hflip)
        if self.vflip:
            self.vflip.apply(batch, draw.vflip)

    def __repr__(self) -> str:
        parts = [repr(t) for t in (self.brightness, self.hflip, self.vflip) if t is not None]
        return f"Augmentation({', '.join(parts)})"


def _flip(axis: Literal["horizontal", "vertical"], value: float | bool | None) -> RandomFlip | None:
    if value is None or value is False:
        return None
    return RandomFlip(axis, 0.5 if value is True else float(value))


def parse_augmentation(spec: str) -> Augmentation | None:
    """An augmentation from a short spelling: `paper`, `none`, or comma-separated parts
    `brightness=0.1:0.7`, `hflip`, `vflip` (e.g. `hflip,vflip` for flips only).

    Raises:
        ValueError: an unknown part or a bad range.
    """
    text = spec.strip().lower()
    if text in ("none", ""):
        return None
    if text == "paper":
        return Augmentation.paper()
    brightness: tuple[float, float] | None = None
    hflip = vflip = False
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.startswith("brightness="):
            low, _, high = part.split("=", 1)[1].partition(":")
            brightness = (float(low), float(high))
        elif part == "hflip":
            hflip = True
        elif part == "vflip":
            vflip = True
        else:
            raise ValueError(
                f"unknown augmentation {part!r}; use paper, none, brightness=LOW:HIGH, hflip, vflip"
            )
    return Augmentation(brightness=brightness, hflip=hflip, vflip=vflip)
