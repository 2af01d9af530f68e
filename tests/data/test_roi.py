"""The paper's ROI (Eq. 3): exact blocks on 1061x752, proportional elsewhere; crops; figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.conftest import (
    REAL_AXIAL,
    REAL_CREDIT,
    gradient,
    read_csv,
    real_images,
    run_cli,
    write_csv,
    write_png,
)
from lumbar.data.roi import (
    DISC_ROI_PIXELS,
    CenterROI,
    DiscROI,
    GridROI,
    NoROI,
    crop_manifest,
    draw_roi_figure,
    eq3_blocks,
    parse_roi,
)
from lumbar.errors import UserError


def test_eq3_selects_the_papers_twenty_blocks() -> None:
    expected = [*range(31, 35), *range(44, 48), *range(57, 61), *range(70, 74), *range(83, 87)]
    assert list(eq3_blocks()) == expected
    assert list(GridROI().blocks) == expected


def test_eq3_crop_is_the_union_of_twenty_82x94_blocks_on_1061x752() -> None:
    roi = GridROI()
    union = np.zeros((752, 1061), dtype=bool)
    for block in eq3_blocks():
        left, top, right, bottom = roi.block_box(block, 1061, 752)
        assert (right - left, bottom - top) == (82, 94)
        union[top:bottom, left:right] = True
    assert union.sum() == 20 * 82 * 94
    assert roi.box(1061, 752) == (328, 188, 656, 658)
    image = np.arange(752 * 1061, dtype=np.int64).reshape(752, 1061)
    crop = roi(image)
    assert crop.shape == (470, 328)
    assert np.array_equal(crop, image[union].reshape(470, 328))


def test_grid_numbering_is_row_by_row_13_across() -> None:
    roi = GridROI()
    assert roi.block_box(1, 1061, 752) == (0, 0, 82, 94)
    assert roi.block_box(14, 1061, 752) == (0, 94, 82, 188)
    assert roi.block_box(13, 1061, 752) == (984, 0, 1061, 94)  # last column: 77 px wide
    assert roi.block_box(104, 1061, 752) == (984, 658, 1061, 752)


@pytest.mark.parametrize(("width", "height"), [(512, 512), (320, 320), (2122, 1504), (400, 300)])
def test_grid_scales_proportionally(width: int, height: int) -> None:
    left, top, right, bottom = GridROI().box(width, height)
    assert left == round(328 * width / 1061) and right == round(656 * width / 1061)
    assert top == round(188 * height / 752) and bottom == round(658 * height / 752)
    if (width, height) == (2122, 1504):
        assert (left, top, right, bottom) == (656, 376, 1312, 1316)


def test_center_and_none() -> None:
    image = gradient(100, 200)
    assert CenterROI(0.5).box(200, 100) == (50, 25, 150, 75)
    assert CenterROI(1).box(200, 100) == (0, 0, 200, 100)
    assert NoROI()(image) is not None and NoROI()(image).shape == (100, 200)
    rgb = np.stack([image] * 3, axis=-1)
    assert CenterROI(0.5)(rgb).shape == (50, 100, 3)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan")])
def test_center_fraction_is_validated(bad: float) -> None:
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        CenterROI(bad)


def test_grid_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match=r"outside 1\.\.104"):
        GridROI([0, 5])
    with pytest.raises(ValueError, match="at least one block"):
        GridROI([])
    with pytest.raises(ValueError, match="does not fit"):
        GridROI(grid=(20, 8))


def test_parse_roi() -> None:
    assert isinstance(parse_roi("grid"), GridROI)
    assert parse_roi("center:0.75").spec == "center:0.75"
    assert isinstance(parse_roi(None), NoROI)
    assert parse_roi("grid:31,32").box(1061, 752) == (328, 188, 492, 282)
    for bad in ("square", "center:2", "center:x", "grid:999"):
        with pytest.raises(UserError):
            parse_roi(bad)


def test_crop_manifest_keeps_bit_depth(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", gradient(752, 1061))
    write_png(tmp_path / "b16.png", gradient(376, 530, np.uint16))
    write_csv(
        tmp_path / "m.csv",
        ("image", "patient_id", "disc_state", "note"),
        [("a.png", "P1", 0, "x"), ("b16.png", "P2", 2, "y")],
    )
    manifest, count = crop_manifest(tmp_path / "m.csv", tmp_path / "roi", GridROI())
    assert count == 2
    rows = read_csv(manifest)
    assert [r["roi"] for r in rows] == ["grid", "grid"]
    assert [r["note"] for r in rows] == ["x", "y"]
    with Image.open(manifest.parent / rows[0]["image"]) as first:
        assert first.size == (328, 470) and first.mode == "L"
        assert np.array_equal(np.asarray(first), gradient(752, 1061)[188:658, 328:656])
    with Image.open(manifest.parent / rows[1]["image"]) as second:
        assert second.mode.startswith("I;16")
        assert second.size == (164, 235)  # 530x376: x 164-328, y 94-329


def test_figure_on_a_real_axial_image(tmp_path: Path) -> None:
    real_images()  # skips visibly without the shared data
    image = real_images()[0].parent / REAL_AXIAL[0]
    out = draw_roi_figure(image, tmp_path / "fig.png", GridROI(), credit=REAL_CREDIT)
    with Image.open(out) as fig:
        assert fig.format == "PNG" and fig.width > 800 and fig.height > 400
        pixels = np.asarray(fig.convert("RGB")).astype(int)
    reddish = (pixels[..., 0] > pixels[..., 1] + 40) & (pixels[..., 0] > pixels[..., 2] + 40)
    assert reddish.mean() > 0.01  # the 20 chosen blocks are shaded


def test_cli_roi_figure_and_crop(tmp_path: Path, monkeypatch, capsys) -> None:
    write_png(tmp_path / "a.png", gradient(64, 64))
    code, out, err = run_cli(
        [
            "roi",
            "--figure",
            tmp_path / "a.png",
            "--out",
            tmp_path / "f.png",
            "--mode",
            "center:0.5",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0 and (tmp_path / "f.png").is_file(), err
    code, _, err = run_cli(
        ["roi", "--figure", tmp_path / "nope.png", "--out", tmp_path / "g.png"], monkeypatch, capsys
    )
    assert code == 2 and "nope.png: file not found" in err
    assert not (tmp_path / "g.png").exists()
    write_csv(tmp_path / "m.csv", ("image", "patient_id"), [("a.png", "P1")])
    code, out, err = run_cli(
        ["roi", tmp_path / "m.csv", "--out", tmp_path / "ds2", "--mode", "none"],
        monkeypatch,
        capsys,
    )
    assert code == 0 and "wrote 1 cropped images (none)" in out, err
    code, _, err = run_cli(
        ["roi", tmp_path / "m.csv", "--out", tmp_path / "ds3", "--mode", "oval"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "unknown ROI 'oval'" in err


def test_crop_manifest_crops_axial_rows_only_by_default(tmp_path: Path) -> None:
    write_png(tmp_path / "ax.png", gradient(752, 1061))
    write_png(tmp_path / "sag.png", gradient(100, 100))
    write_csv(
        tmp_path / "m.csv",
        ("image", "patient_id", "view"),
        [("ax.png", "P1", "axial_t2"), ("sag.png", "P1", "sagittal_t2")],
    )
    manifest, count = crop_manifest(tmp_path / "m.csv", tmp_path / "out", GridROI())
    rows = read_csv(manifest)
    assert count == 1
    assert [r["roi"] for r in rows] == ["grid", "none"]
    assert rows[1]["image"] == "../sag.png"  # kept, uncropped, relative to the new folder
    _, every = crop_manifest(tmp_path / "m.csv", tmp_path / "all", GridROI(), views=None)
    assert every == 2
    with pytest.raises(UserError, match="no row has view myelo"):
        crop_manifest(tmp_path / "m.csv", tmp_path / "none", GridROI(), views=["myelo"])
    assert not (tmp_path / "none").exists()


def test_crop_manifest_writes_dicom_crops_as_16_bit_png(tmp_path: Path) -> None:
    import shutil

    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "mr.dcm")
    write_csv(tmp_path / "m.csv", ("image", "patient_id"), [("mr.dcm", "P1")])
    manifest, _ = crop_manifest(tmp_path / "m.csv", tmp_path / "out", CenterROI(0.5))
    with Image.open(manifest.parent / read_csv(manifest)[0]["image"]) as crop:
        assert crop.size == (32, 32) and crop.mode.startswith("I;16")
        values = np.asarray(crop)
    assert values.min() == 0 and values.max() == 65535  # stretched, full 16-bit precision


def _dot_image(height: int, width: int, spacing: float, centre_mm: tuple[float, float]):
    """A black image with a 10 mm bright square whose centre is `centre_mm` from pixel (0, 0)."""
    image = np.zeros((height, width), dtype=np.uint8)
    ys, xs = np.mgrid[0:height, 0:width] * spacing
    inside = (np.abs(xs - centre_mm[0]) <= 5) & (np.abs(ys - centre_mm[1]) <= 5)
    image[inside] = 200
    return image


def test_disc_roi_crops_millimetres_around_the_disc_whatever_the_matrix() -> None:
    roi = parse_roi("disc:40")
    assert isinstance(roi, DiscROI) and roi.spec == "disc:40" and roi.pixels == DISC_ROI_PIXELS
    crops = []
    for size, spacing in ((256, 0.8), (512, 0.4)):
        image = _dot_image(size, size, spacing, (60.0, 90.0))
        row = {"disc_x": str(60 / spacing), "disc_y": str(90 / spacing),
               "row_spacing_mm": str(spacing), "col_spacing_mm": str(spacing)}  # fmt: skip
        crop = roi.for_row(row)(image)
        assert crop.shape == (224, 224) and crop.dtype == np.uint8
        crops.append(crop.astype(float))
        bright = np.argwhere(crop > 100)
        # the 10 mm square is a quarter of 40 mm: 56 px wide, centred in the crop
        assert bright.mean(axis=0) == pytest.approx((111.5, 111.5), abs=1.0)
        assert 52 <= np.ptp(bright[:, 0]) + 1 <= 60
    assert np.abs(crops[0] - crops[1]).mean() < 4.0


def test_disc_roi_pads_outside_the_image_and_keeps_channels() -> None:
    image = np.full((20, 30, 3), 90, dtype=np.uint8)
    placed = DiscROI(20, pixels=16).for_row(
        {"disc_x": "0", "disc_y": "0", "row_spacing_mm": "1", "col_spacing_mm": "1"}
    )
    crop = placed(image)
    assert crop.shape == (16, 16, 3)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-1, -1].tolist() == [90, 90, 90]
    assert placed.box(30, 20) == (-10, -10, 10, 10)


def test_disc_roi_needs_each_rows_disc_position() -> None:
    roi = DiscROI(60)
    with pytest.raises(ValueError, match="needs the disc position and PixelSpacing"):
        roi.for_row({"disc_x": "", "disc_y": "3", "row_spacing_mm": "1", "col_spacing_mm": "1"})
    with pytest.raises(ValueError, match="needs each image's disc position"):
        roi(np.zeros((4, 4)))
    for bad in ("disc:0", "disc:-3", "disc:x", "disc:900"):
        with pytest.raises(UserError):
            parse_roi(bad)


def test_crop_manifest_with_disc_roi(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", _dot_image(100, 120, 0.5, (30.0, 20.0)))
    write_png(tmp_path / "b.png", _dot_image(100, 120, 0.5, (30.0, 20.0)))
    columns = ("image", "patient_id", "view", "disc_x", "disc_y", "row_spacing_mm",
               "col_spacing_mm")  # fmt: skip
    write_csv(
        tmp_path / "m.csv",
        columns,
        [
            ("a.png", "P1", "axial_t2", 60, 40, 0.5, 0.5),
            ("b.png", "P2", "axial_t2", "", "", "", ""),
        ],
    )
    with pytest.raises(UserError, match=r"m\.csv: row 3: ROI disc:30 needs the disc position"):
        crop_manifest(tmp_path / "m.csv", tmp_path / "roi", DiscROI(30))
    write_csv(tmp_path / "m.csv", columns, [("a.png", "P1", "axial_t2", 60, 40, 0.5, 0.5)])
    manifest, count = crop_manifest(tmp_path / "m.csv", tmp_path / "roi", DiscROI(30))
    rows = read_csv(manifest)
    assert count == 1 and rows[0]["roi"] == "disc:30"
    with Image.open(manifest.parent / rows[0]["image"]) as crop:
        assert crop.size == (224, 224)
        assert np.asarray(crop)[112, 112] == 200
