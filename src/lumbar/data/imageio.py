"""Reading manifest images: PNG/JPEG (8- or 16-bit, grayscale or RGB) and DICOM, as numpy arrays.

Two readers serve two needs. `read_native` keeps the stored bit depth (for `lumbar roi`, which
writes crops without losing precision). `read_uint8` maps every image to 8 bits, the input
range of every backbone: 8-bit images pass unchanged (as the paper's JPEGs went into Keras),
16-bit images and DICOM pixel data are stretched from their minimum to their maximum (after the
DICOM modality LUT and, when the file declares one, its VOI window) so that MRI of any scanner
scaling uses the full 0-255 range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima"})
RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})


def is_dicom(path: Path) -> bool:
    """True for a `.dcm`/`.dicom`/`.ima` file, or a file without a raster suffix holding `DICM`."""
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in RASTER_SUFFIXES:
        return False
    with open(path, "rb") as handle:
        head = handle.read(132)
    return head[128:132] == b"DICM"


def probe_image(path: Path) -> None:
    """Check cheaply (headers only) that `path` is an image this module can read.

    Raises:
        OSError, ValueError: the file is missing, unreadable, or not a supported image.
    """
    path = Path(path)
    if is_dicom(path):
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "PixelData" not in ds and "Rows" not in ds:
            raise ValueError("DICOM file has no image")
        return
    from PIL import Image

    with Image.open(path) as image:
        if image.width < 1 or image.height < 1:
            raise ValueError("empty image")


def read_native(path: Path) -> np.ndarray:
    """The stored pixels: (H, W) or (H, W, 3); uint8 or uint16 for rasters, float32 for DICOM.

    DICOM values have the modality LUT (rescale slope/intercept) applied. Palette and alpha
    images are converted to RGB or grayscale.

    Raises:
        OSError, ValueError: unreadable file, unsupported mode, or a multi-frame DICOM.
    """
    path = Path(path)
    if is_dicom(path):
        return _read_dicom(path, window=False)
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        mode = image.mode
        if mode in ("1", "P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
            image = image.convert("L" if mode in ("1", "LA") else "RGB")
            mode = image.mode
        array = np.asarray(image)
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        array = np.clip(array, 0, 65535).astype(np.uint16)
    elif mode == "F":
        array = array.astype(np.float32)
    elif array.dtype != np.uint8:
        raise ValueError(f"unsupported image mode {mode}")
    return array


def read_uint8(path: Path) -> np.ndarray:
    """The image as uint8, (H, W) or (H, W, 3); see the module docstring for the mapping."""
    path = Path(path)
    array = _read_dicom(path, window=True) if is_dicom(path) else read_native(path)
    if array.dtype == np.uint8:
        return array
    return stretch_to_uint8(array)


def stretch_to_uint8(array: np.ndarray) -> np.ndarray:
    """Map [min, max] of `array` linearly onto [0, 255]; a constant image becomes all zeros."""
    values = array.astype(np.float32, copy=False)
    low = float(values.min())
    high = float(values.max())
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.rint(scaled, out=scaled).astype(np.uint8)


def _read_dicom(path: Path, *, window: bool) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(
            f"multi-frame DICOM ({frames} frames); export the chosen frame as its own file"
        )
    pixels = ds.pixel_array
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3:  # colour DICOM: already RGB after pydicom's conversion
        return pixels.astype(np.uint8) if pixels.dtype == np.uint8 else stretch_to_uint8(pixels)
    values = apply_modality_lut(pixels, ds)
    if window and "WindowCenter" in ds and "WindowWidth" in ds:
        values = apply_voi_lut(values, ds)
    values = np.asarray(values, dtype=np.float32)
    if photometric == "MONOCHROME1":  # 0 is white: invert so that bright means signal
        values = values.max() - values
    return values
