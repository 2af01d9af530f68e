"""How any sagittal image becomes the localiser's input: gray, windowed, letterboxed square.

One definition for training and inference, so that a disc's pixel position maps the same way
both ways (pixel centre convention: x = column index, y = row index, as numpy indexes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Side of the square network input, pixels.
INPUT_SIZE = 160


def to_gray(image: np.ndarray) -> np.ndarray:
    """A 2D float32 array from gray, RGB(A) or single-channel 3D input (channels last)."""
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=-1) if array.shape[-1] in (3, 4) else array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {np.shape(image)}")
    return array.astype(np.float32)


def window(image: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] between the 0.5th and 99.5th percentiles (robust to bright spots)."""
    gray = to_gray(image)
    lo, hi = np.percentile(gray[::2, ::2], [0.5, 99.5])
    if hi - lo < 1e-6:  # blank or constant: keep it flat, not amplified noise
        return np.zeros_like(gray)
    return np.clip((gray - lo) / (hi - lo), 0.0, 1.0)


@dataclass(frozen=True)
class Letterbox:
    """Image -> square input: p_input = p_image * scale + (pad_x, pad_y), pixel centres."""

    scale: float
    pad_x: float
    pad_y: float

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """Image pixel coordinates (N, 2) to input coordinates."""
        return np.asarray(xy, dtype=np.float64) * self.scale + [self.pad_x, self.pad_y]

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """Input pixel coordinates (N, 2) back to image coordinates."""
        return (np.asarray(xy, dtype=np.float64) - [self.pad_x, self.pad_y]) / self.scale


def letterbox(image01: np.ndarray, size: int = INPUT_SIZE) -> tuple[torch.Tensor, Letterbox]:
    """Resize keeping the aspect so the longer side is `size`, centre on a black square."""
    h, w = image01.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    tensor = torch.from_numpy(np.ascontiguousarray(image01, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=(nh, nw), mode="bilinear", antialias=True)[0, 0]
    out = torch.zeros(size, size)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized.clamp(0, 1)
    # pixel centres: image pixel i spans [i, i+1) scaled by nw/w (exact per axis)
    sx, sy = nw / w, nh / h
    box = Letterbox(scale=(sx + sy) / 2, pad_x=left + 0.5 * sx - 0.5, pad_y=top + 0.5 * sy - 0.5)
    return out, box


def to_network(batch01: torch.Tensor) -> torch.Tensor:
    """[0, 1] gray (N, 1, S, S) to the Lite0 weights' units, (x * 255 - 127) / 128."""
    return (batch01 * 255.0 - 127.0) / 128.0
