"""Pixel decoding across transfer syntaxes, windowing and PNG encoding."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lumbar.ingest.export import PixelProblem, frame_pixels, png_bytes, render_frame, windowed

DECODABLE = [
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR2_J2KR.dcm",  # 12-bit MR, JPEG 2000 lossless
    "JPEG-LL.dcm",  # JPEG lossless, process 14 SV1, 16-bit
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, colour
    "emri_small_jpeg_2k_lossless.dcm",  # enhanced multi-frame MR
    "emri_small_RLE.dcm",
    "emri_small_big_endian.dcm",
]


def _decode(path: Path, frame: int = 0) -> np.ndarray:
    import pydicom

    return frame_pixels(pydicom.dcmread(path), frame)


@pytest.mark.parametrize("name", DECODABLE)
def test_transfer_syntaxes_decode_to_png(real_dicom, name: str) -> None:
    import pydicom

    ds = pydicom.dcmread(real_dicom(name))
    png = render_frame(ds, 0)
    image = Image.open(io.BytesIO(png))
    assert image.size == (ds.Columns, ds.Rows)
    assert np.asarray(image).std() > 0  # not a blank image


def test_compressed_and_uncompressed_decode_identically(real_dicom) -> None:
    reference = _decode(real_dicom("MR_small.dcm"))
    for name in (
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
    ):
        np.testing.assert_array_equal(_decode(real_dicom(name)), reference)


def test_jpeg_baseline_mr_made_with_pillow(tmp_path: Path, real_dicom) -> None:
    """An 8-bit grayscale MR in JPEG baseline (1.2.840.10008.1.2.4.50), as many PACS export."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    ds = pydicom.dcmread(real_dicom("MR_small.dcm"))
    pixels = (ds.pixel_array / ds.pixel_array.max() * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    path = tmp_path / "jpeg.dcm"
    ds.save_as(path)
    decoded = _decode(path)
    assert decoded.shape == pixels.shape
    assert np.abs(decoded.astype(int) - pixels.astype(int)).mean() < 4


def test_multiframe_frames_differ(real_dicom) -> None:
    first = _decode(real_dicom("emri_small.dcm"), 0)
    last = _decode(real_dicom("emri_small.dcm"), 9)
    assert first.shape == last.shape == (64, 64)
    assert not np.array_equal(first, last)


def test_frame_out_of_range(real_dicom) -> None:
    with pytest.raises(PixelProblem, match="frame 11 requested of 10"):
        _decode(real_dicom("emri_small.dcm"), 10)


def test_corrupt_compressed_data_is_a_pixel_problem(real_dicom) -> None:
    import pydicom
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(real_dicom("MR_small_jp2klossless.dcm"))
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    with pytest.raises(PixelProblem, match="cannot decode pixel data \\(JPEG 2000"):
        frame_pixels(ds, 0)


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
def test_encapsulated_data_cut_short_is_a_pixel_problem(real_dicom) -> None:
    with pytest.raises(PixelProblem):
        _decode(real_dicom("emri_small_jpeg_2k_lossless_too_short.dcm"), 9)


def test_missing_pixel_data_is_a_pixel_problem() -> None:
    from pydicom.dataset import Dataset

    with pytest.raises(PixelProblem, match="missing pixel data"):
        frame_pixels(Dataset(), 0)


def test_window_center_width_follow_the_dicom_linear_function() -> None:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.WindowCenter, ds.WindowWidth = 100, 201
    out = windowed(ds, np.array([[0, 100, 200, 1000]], dtype=np.uint16))
    np.testing.assert_allclose(out[0], [0.0025, 0.5025, 1.0, 1.0], atol=1e-4)


def test_rescale_is_applied_before_the_window() -> None:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    ds.WindowCenter, ds.WindowWidth = [0, 50], [101, 10]  # multi-valued: the first one counts
    out = windowed(ds, np.array([[0, 50, 100]], dtype=np.uint16))
    np.testing.assert_allclose(out[0], [0.0, 0.5, 1.0], atol=0.01)


def test_without_window_robust_percentiles_ignore_hot_pixels() -> None:
    from pydicom.dataset import Dataset

    pixels = np.tile(np.arange(100, dtype=np.uint16), (100, 1))
    pixels[0, 0] = 60000  # one hot pixel must not squash the rest into black
    out = windowed(Dataset(), pixels)
    assert out[50, 50] == pytest.approx(50 / 99, abs=0.02)


def test_monochrome1_is_inverted() -> None:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.WindowCenter, ds.WindowWidth = 50, 101
    out = windowed(ds, np.array([[0, 100]], dtype=np.uint16))
    np.testing.assert_allclose(out[0], [1.0, 0.0], atol=0.01)


@pytest.mark.parametrize(("bits", "mode", "top"), [(8, "L", 255), (16, "I;16", 65535)])
def test_png_bit_depth(bits: int, mode: str, top: int) -> None:
    image = Image.open(io.BytesIO(png_bytes(np.array([[0.0, 1.0]]), bits)))
    assert image.mode == mode
    assert np.asarray(image).max() == top


def test_png_is_deterministic(real_dicom) -> None:
    import pydicom

    ds = pydicom.dcmread(real_dicom("MR_small.dcm"))
    assert render_frame(ds, 0) == render_frame(ds, 0)


# Damage that crashed decoders when fuzzing (issue 17): each case runs in a child process, so
# a decoder that aborts the process (GDCM) fails the test instead of ending the test run.
_CHILD = """
import sys
import pydicom
from pydicom.data import get_testdata_file
from lumbar.ingest.export import PixelProblem, render_frame
ds = pydicom.dcmread(get_testdata_file(sys.argv[1]))
setattr(ds, sys.argv[2], int(sys.argv[3]))
try:
    render_frame(ds, 0)
    print("decoded")
except PixelProblem as problem:
    print("PixelProblem:", problem)
"""


@pytest.mark.parametrize(
    ("name", "keyword", "value", "reason"),
    [
        # header larger than the JPEG-LS frame: GDCM aborted the process (SIGABRT)
        ("MR_small_jpeg_ls_lossless.dcm", "Rows", 128, "differs from"),
        ("MR_small_jpeg_ls_lossless.dcm", "Columns", 200, "differs from"),
        # header smaller than the RLE frame: pylibjpeg-rle panicked (a BaseException)
        ("MR_small_RLE.dcm", "Rows", 32, "cannot decode"),
        ("MR_small.dcm", "Rows", 9000, "larger than"),
        ("MR_small.dcm", "NumberOfFrames", 100001, "NumberOfFrames"),
    ],
)
def test_damage_that_crashed_decoders_is_a_pixel_problem(
    real_dicom, name, keyword, value, reason
) -> None:
    import subprocess
    import sys

    real_dicom(name)  # skips when pydicom-data is absent
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, name, keyword, str(value)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-600:]
    assert proc.stdout.startswith("PixelProblem:") and reason in proc.stdout, proc.stdout
