"""Turn one selected DICOM frame into a windowed 8- or 16-bit grayscale PNG.

Windowing: the Modality LUT (RescaleSlope/Intercept) first, then the image's own
WindowCenter/WindowWidth (the DICOM linear VOI function) when present, else robust percentiles
(0.5 and 99.5) so a few hot pixels cannot wash the image out. MONOCHROME1 is inverted so bright
always means high signal. Colour images stay RGB (8-bit).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5


class PixelProblem(Exception):
    """The pixel data cannot be decoded; the message is the report's reason."""


def frame_pixels(ds: Any, frame: int) -> np.ndarray:
    """The stored pixels of one frame (0-based), decoded with whatever plugin is installed.

    Raises:
        PixelProblem: missing, truncated or undecodable pixel data, or a frame out of range.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise PixelProblem("missing pixel data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 0 <= frame < frames:
        raise PixelProblem(f"frame {frame + 1} requested of {frames}")
    try:
        from pydicom.pixels import pixel_array

        # Colour data comes back as RGB (YBR converted); one frame decoded, not the whole file.
        return np.asarray(pixel_array(ds, index=frame if frames > 1 else None))
    except PixelProblem:
        raise
    except Exception as err:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = syntax.name if syntax is not None else "unknown transfer syntax"
        text = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise PixelProblem(f"cannot decode pixel data ({name}): {text}") from None


def windowed(ds: Any, pixels: np.ndarray) -> np.ndarray:
    """Pixels mapped to [0, 1] floats (grayscale, 2-D) or left as uint8 RGB (3-D)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3:
        return _to_uint8_rgb(pixels)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        return _to_uint8_rgb(apply_color_lut(pixels, ds))
    values = pixels.astype(np.float64)
    slope = _number(ds.get("RescaleSlope"), 1.0)
    intercept = _number(ds.get("RescaleIntercept"), 0.0)
    values = values * slope + intercept
    center = _number(ds.get("WindowCenter"), None)
    width = _number(ds.get("WindowWidth"), None)
    if center is not None and width is not None and width >= 1:
        # DICOM PS3.3 C.11.2.1.2.1 linear function.
        out = ((values - (center - 0.5)) / (width - 1) + 0.5).clip(0.0, 1.0)
    else:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            out = np.zeros_like(values)
        else:
            low, high = np.percentile(finite, [LOW_PERCENTILE, HIGH_PERCENTILE])
            if high <= low:
                high = low + 1.0
            out = ((values - low) / (high - low)).clip(0.0, 1.0)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out


def png_bytes(image: np.ndarray, bit_depth: int = 8) -> bytes:
    """Encode a [0, 1] grayscale image at 8 or 16 bits (or a uint8 RGB image) as PNG bytes."""
    from PIL import Image

    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if image.ndim == 3:
        pil = Image.fromarray(image, mode="RGB")
    elif bit_depth == 16:
        pil = Image.fromarray(np.round(image * 65535).astype(np.uint16))
    else:
        pil = Image.fromarray(np.round(image * 255).astype(np.uint8))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def render_frame(ds: Any, frame: int, bit_depth: int = 8) -> bytes:
    """Decode, window and PNG-encode one frame."""
    return png_bytes(windowed(ds, frame_pixels(ds, frame)), bit_depth)


def _to_uint8_rgb(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels[..., :3])
    values = pixels.astype(np.float64)
    high = float(values.max()) or 1.0
    return np.ascontiguousarray(
        (values / high * 255).round().clip(0, 255).astype(np.uint8)[..., :3]
    )


def _number(value: Any, default: float | None) -> float | None:
    """First value of a possibly multi-valued numeric tag, or `default`."""
    if value is None or value == "":
        return default
    try:
        if not isinstance(value, str | bytes | int | float):
            value = next(iter(value))
        return float(value)
    except (TypeError, ValueError, IndexError):
        return default
