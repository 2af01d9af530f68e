"""The acquisition chain shared by every series: tissue signals, texture, coil bias, noise, ADC.

A renderer paints tissue signals on a `Canvas`; `acquire` turns that into the stored 12-bit
pixel data a scanner would write, with the patient's noise level and coil bias field.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lumbar.synth import tissue as T
from lumbar.synth.canvas import Canvas, bias_field

STORED_MAX = 4095  # 12-bit data in 16-bit words, as most MR scanners store it
_PSF = np.array([0.25, 0.5, 0.25], dtype=np.float32)  # binomial kernel, sigma ~0.7 pixel


def signal_map(sequence: T.Sequence) -> dict[T.Tissue, float]:
    """Signal of every named tissue under `sequence`, normalised so the brightest is 1."""
    tissues = [v for v in vars(T).values() if isinstance(v, T.Tissue)]
    raw = {t: sequence.signal(t) for t in tissues}
    top = max(raw.values())
    return {t: s / top for t, s in raw.items()}


class Signals:
    """Callable tissue -> normalised signal for one sequence (computes unseen tissues on demand)."""

    def __init__(self, sequence: T.Sequence) -> None:
        self.sequence = sequence
        self._known = signal_map(sequence)
        self._top = max(sequence.signal(t) for t in self._known)

    def __call__(self, tissue: T.Tissue) -> float:
        value = self._known.get(tissue)
        if value is None:
            value = self.sequence.signal(tissue) / self._top
        return value


def texture_bank(size: int, rng: np.random.Generator, grain_px: int = 8) -> np.ndarray:
    """A smooth random field (about unit variance) that scanners crop per slice as texture."""
    small = rng.standard_normal((size // grain_px + 2, size // grain_px + 2)).astype(np.float32)
    return ndimage.zoom(small, grain_px, order=1)[:size, :size]


class Scanner:
    """One series' acquisition: its coil bias field, noise level and receiver gain.

    The bias field belongs to the coil and stays for the whole series; texture and noise are
    drawn from per-series banks at random offsets, which costs a slice almost nothing.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        rng: np.random.Generator,
        *,
        noise: float,
        bias: float,
        texture: float,
        gain: float,
        texture_bank: np.ndarray,
    ) -> None:
        rows, cols = shape
        self.shape = shape
        self.noise = noise
        self.gain = gain
        self.texture = texture
        self.rng = rng
        self.bias = bias_field(shape, rng, bias)
        self._texture = texture_bank
        self._pad = min(texture_bank.shape[0] - rows, texture_bank.shape[1] - cols)
        if self._pad < 1:
            raise ValueError(f"texture bank {texture_bank.shape} is too small for {shape}")
        self._noise = rng.standard_normal(3 * rows * cols, dtype=np.float32)

    def _noise_field(self) -> np.ndarray:
        rows, cols = self.shape
        start = int(self.rng.integers(0, self._noise.size - rows * cols))
        return self._noise[start : start + rows * cols].reshape(rows, cols)

    def acquire(self, canvas: Canvas) -> np.ndarray:
        """Turn a painted canvas into uint16 pixel data (texture, PSF, bias, Rician noise)."""
        rows, cols = self.shape
        image = canvas.image
        if self.texture > 0:
            dy, dx = (int(v) for v in self.rng.integers(0, self._pad, 2))
            image = image * (1.0 + self.texture * self._texture[dy : dy + rows, dx : dx + cols])
        # the scanner's point-spread function softens every edge over about a pixel
        image = ndimage.correlate1d(image, _PSF, axis=0, mode="nearest")
        image = ndimage.correlate1d(image, _PSF, axis=1, mode="nearest")
        image *= self.bias
        real = image + self._noise_field() * self.noise
        imag = self._noise_field() * self.noise
        image = np.sqrt(real * real + imag * imag)  # magnitude image: Rician noise
        image *= self.gain * STORED_MAX
        np.clip(image, 0, STORED_MAX, out=image)
        return image.astype(np.uint16)
