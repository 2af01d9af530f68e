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
MAX_FRAME_SIDE = 8192  # pixels; larger frames are refused before decoding
MAX_FRAMES = 100_000


class PixelProblem(Exception):
    """The pixel data cannot be decoded; the message is the report's reason."""


def frame_pixels(ds: Any, frame: int) -> np.ndarray:
    """The stored pixels of one frame (0-based), decoded with whatever plugin is installed.

    Sizes are checked before any decoder runs: a frame over MAX_FRAME_SIDE pixels a side, more
    than MAX_FRAMES frames, or a JPEG/JPEG-LS frame whose own size differs from Rows/Columns
    (GDCM aborts the whole process on that) is refused. A decoder written in Rust that panics
    (pylibjpeg-rle raises pyo3's PanicException, a BaseException) is a PixelProblem too.

    Raises:
        PixelProblem: missing, truncated or undecodable pixel data, or a frame out of range.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise PixelProblem("missing pixel data")
    rows, columns = _header_int(ds, "Rows"), _header_int(ds, "Columns")
    if not rows or not columns:
        raise PixelProblem("no Rows/Columns")
    if rows > MAX_FRAME_SIDE or columns > MAX_FRAME_SIDE:
        raise PixelProblem(f"frame {rows}x{columns} is larger than {MAX_FRAME_SIDE} a side")
    frames = _header_int(ds, "NumberOfFrames") or 1
    if frames > MAX_FRAMES:
        raise PixelProblem(f"NumberOfFrames {frames} is more than {MAX_FRAMES}")
    if not 0 <= frame < frames:
        raise PixelProblem(f"frame {frame + 1} requested of {frames}")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = syntax.name if syntax is not None else "unknown transfer syntax"
    try:
        if syntax is not None and str(syntax) in JPEG_SYNTAXES:
            _check_jpeg_frame(ds, frame, frames, rows, columns)
        from pydicom.pixels import pixel_array

        # Colour data comes back as RGB (YBR converted); one frame decoded, not the whole file.
        return np.asarray(pixel_array(ds, index=frame if frames > 1 else None))
    except PixelProblem:
        raise
    except Exception as err:
        text = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise PixelProblem(f"cannot decode pixel data ({name}): {text}") from None
    except BaseException as err:
        if type(err).__module__ != "pyo3_runtime":  # only a Rust panic, never Ctrl-C
            raise
        raise PixelProblem(f"cannot decode pixel data ({name}): decoder failed") from None


# JPEG (baseline, extended, lossless, lossless SV1) and JPEG-LS: frames carry their own size.
JPEG_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
    }
)
# Start-of-frame markers: SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC); and JPEG-LS SOF55.
_SOF_MARKERS = frozenset(set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7})


def _check_jpeg_frame(ds: Any, frame: int, frames: int, rows: int, columns: int) -> None:
    """Refuse a JPEG/JPEG-LS frame whose start-of-frame size is not Rows x Columns."""
    from pydicom.encaps import get_frame

    data = get_frame(ds.PixelData, frame, number_of_frames=frames)
    size = _jpeg_frame_size(data)
    if size is None:
        raise PixelProblem("compressed frame has no JPEG frame header")
    if size != (rows, columns):
        raise PixelProblem(
            f"compressed frame is {size[0]}x{size[1]}, which differs from Rows x Columns "
            f"{rows}x{columns}"
        )


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from the first start-of-frame segment of a JPEG codestream, or None."""
    at = 2 if data[:2] == b"\xff\xd8" else 0
    if not at:
        return None
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # no length
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _SOF_MARKERS:
            if at + 9 > len(data):
                return None
            return (
                int.from_bytes(data[at + 5 : at + 7], "big"),
                int.from_bytes(data[at + 7 : at + 9], "big"),
            )
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            return None
        at += 2 + length
    return None


def _header_int(ds: Any, keyword: str) -> int | None:
    """An integer header value, or None when absent or unreadable."""
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    except Exception:
        raise PixelProblem(f"unreadable {keyword}") from None


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
