"""The manifest dataset and loader: formats, normalisation, cache, seeded augmentation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lumbar.data import dataset as dataset_module
from lumbar.data.augment import Augmentation
from lumbar.data.dataset import ManifestDataset, make_loader
from lumbar.data.manifest import read_manifest
from lumbar.errors import UserError
from lumbar.models.preprocessing import CAFFE, IMAGENET, Preprocessing

from .conftest import REAL_AXIAL, gradient, real_images, write_csv, write_png

SMALL = Preprocessing(input_size=(40, 60))  # the test images' own size: no resampling
GRAY = Preprocessing(input_size=(40, 60), channels="gray", mean=(0.5,), std=(0.25,))


def _expected(pixels: np.ndarray, p: Preprocessing) -> np.ndarray:
    """The definition of the normalised input for a uint8 (H, W) image, as (C, H, W)."""
    channels = [
        (pixels / 255.0 * p.pixel_range - p.mean[c]) / p.std[c] for c in range(p.num_channels)
    ]
    return np.stack(channels).astype(np.float32)


def _manifest(folder: Path, names: list[str], **columns: list[object]) -> Path:
    header = ["image", "patient_id", *columns]
    rows = [[n, f"P{i}", *(v[i] for v in columns.values())] for i, n in enumerate(names)]
    return write_csv(folder / "manifest.csv", header, rows)


def test_formats_8bit_16bit_rgb_jpeg_dicom(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    image = gradient()
    write_png(tmp_path / "g8.png", image)
    write_png(tmp_path / "g16.png", gradient(dtype=np.uint16) // 16 + 100)  # 12-bit-ish range
    write_png(tmp_path / "rgb.png", np.stack([image] * 3, axis=-1))
    Image.fromarray(image).save(tmp_path / "g.jpg", quality=95)
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "mr.dcm")
    names = ["g8.png", "g16.png", "rgb.png", "g.jpg", "mr.dcm"]
    ds = ManifestDataset(_manifest(tmp_path, names), SMALL, cache="none")
    expected = _expected(image, SMALL)
    assert torch.allclose(ds[0][0], torch.from_numpy(expected), atol=1e-5)
    assert torch.allclose(ds[2][0], torch.from_numpy(expected), atol=1e-5)  # RGB gray = same
    assert (ds[3][0] - torch.from_numpy(expected)).abs().max() < 0.1  # JPEG: lossy
    scaled16 = ds[1][0]  # 16-bit stretched from its min to its max
    assert torch.isclose(scaled16.min(), torch.tensor(float(expected[0].min())), atol=1e-5)
    assert torch.isclose(scaled16[0].max(), torch.tensor(float(expected[0].max())), atol=1e-5)
    mr, label = ds[4]
    assert mr.shape == (3, 40, 60) and torch.isfinite(mr).all() and label.item() == -1
    assert mr.std() > 0.1  # real anatomy, not a constant


def test_gray_and_bgr_channels(tmp_path: Path) -> None:
    rgb = np.zeros((40, 60, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 50  # red and blue differ
    write_png(tmp_path / "c.png", rgb)
    path = _manifest(tmp_path, ["c.png"])
    gray = ManifestDataset(path, GRAY, cache="none")[0][0]
    assert gray.shape == (1, 40, 60)
    caffe = Preprocessing(**{**CAFFE.to_dict(), "input_size": (40, 60)})
    bgr = ManifestDataset(path, caffe, color="rgb", cache="none")[0][0]
    assert bgr[0, 0, 0].item() == pytest.approx(50 - CAFFE.mean[0])  # channel 0 is blue
    assert bgr[2, 0, 0].item() == pytest.approx(200 - CAFFE.mean[2])


def test_target_split_and_unlabelled_rows(tmp_path: Path) -> None:
    for i in range(6):
        write_png(tmp_path / f"{i}.png", gradient())
    path = _manifest(
        tmp_path,
        [f"{i}.png" for i in range(6)],
        disc_state=["0", "2", "", "3", "1", "0"],
        split=["train", "train", "train", "val", "test", "train"],
    )
    train = ManifestDataset(path, SMALL, target="disc_abnormal", split="train", cache="none")
    assert len(train) == 3  # the unlabelled train row is left out, never class 0
    assert train.labels.tolist() == [0, 1, 0]
    assert train.class_counts().tolist() == [2, 1]
    four = ManifestDataset(path, SMALL, target="disc_state", split=["val", "test"], cache="none")
    assert four.labels.tolist() == [3, 1]
    with pytest.raises(UserError, match="no rows with a scs grade"):
        ManifestDataset(path, SMALL, target="scs", cache="none")
    with pytest.raises(ValueError, match="unknown split"):
        ManifestDataset(path, SMALL, split="validation")


def test_memory_cache_decodes_each_image_once(tmp_path: Path, monkeypatch) -> None:
    for i in range(5):
        write_png(tmp_path / f"{i}.png", gradient() // (i + 1))
    path = _manifest(tmp_path, [f"{i}.png" for i in range(5)])
    calls: list[Path] = []
    original = dataset_module.load_image
    monkeypatch.setattr(
        dataset_module, "load_image", lambda p, *a, **k: calls.append(p) or original(p, *a, **k)
    )
    ds = ManifestDataset(path, SMALL, augmentation=Augmentation.paper())
    loader = make_loader(ds, batch_size=2, shuffle=True)
    first = [x.clone() for x, _ in loader]
    assert len(calls) == 5 and ds.cache is not None and ds.cache.complete()
    second = [x for x, _ in loader]
    assert len(calls) == 5  # the second epoch read the cache only
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))  # new draws


def test_mmap_cache_is_reused_by_a_later_run(tmp_path: Path, monkeypatch) -> None:
    for i in range(3):
        write_png(tmp_path / f"{i}.png", gradient())
    path = _manifest(tmp_path, [f"{i}.png" for i in range(3)])
    cache_dir = tmp_path / "cache"
    a = ManifestDataset(path, SMALL, roi="center:0.5", cache="mmap", cache_dir=cache_dir)
    a.warm_cache()
    monkeypatch.setattr(dataset_module, "load_image", lambda *a, **k: pytest.fail("decoded"))
    b = ManifestDataset(path, SMALL, roi="center:0.5", cache="mmap", cache_dir=cache_dir)
    assert torch.equal(a[1][0], b[1][0])
    other_roi = ManifestDataset(path, SMALL, roi="grid", cache="mmap", cache_dir=cache_dir)
    assert other_roi.cache_key() != b.cache_key()  # a different ROI never reads stale pixels


def test_augmentation_is_exact_and_seeded(tmp_path: Path) -> None:
    image = gradient()
    write_png(tmp_path / "a.png", image)
    path = _manifest(tmp_path, ["a.png"])
    flip = ManifestDataset(path, SMALL, augmentation=Augmentation(None, hflip=1.0, vflip=None))
    assert torch.allclose(flip[0][0], torch.from_numpy(_expected(image[:, ::-1], SMALL)), atol=1e-5)
    vflip = ManifestDataset(path, SMALL, augmentation=Augmentation(None, hflip=None, vflip=1.0))
    assert torch.allclose(vflip[0][0], torch.from_numpy(_expected(image[::-1], SMALL)), atol=1e-5)
    half = ManifestDataset(path, SMALL, augmentation=Augmentation((0.5, 0.5), None, None))
    darker = torch.from_numpy(_expected(image * 0.5, SMALL))
    assert torch.allclose(half[0][0], darker, atol=1e-5)
    bright = ManifestDataset(path, SMALL, augmentation=Augmentation((2.0, 2.0), None, None))
    clipped = torch.from_numpy(_expected(np.minimum(image * 2.0, 255), SMALL))
    assert torch.allclose(bright[0][0], clipped, atol=1e-5)
    paper = ManifestDataset(path, SMALL, augmentation=Augmentation.paper(), seed=3)
    again = ManifestDataset(path, SMALL, augmentation=Augmentation.paper(), seed=3)
    assert torch.equal(paper[(4, 0)][0], again[(4, 0)][0])
    assert not torch.equal(paper[(4, 0)][0], paper[(5, 0)][0])


def test_worker_processes_give_the_same_batches_and_share_the_cache(tmp_path: Path) -> None:
    for i in range(8):
        write_png(tmp_path / f"{i}.png", gradient() // (i + 1))
    path = _manifest(tmp_path, [f"{i}.png" for i in range(8)])
    ds0 = ManifestDataset(path, SMALL, augmentation=Augmentation.paper(), seed=1)
    ds2 = ManifestDataset(path, SMALL, augmentation=Augmentation.paper(), seed=1)
    single = make_loader(ds0, batch_size=3, shuffle=True)
    multi = make_loader(ds2, batch_size=3, shuffle=True, num_workers=2)
    for _epoch in range(2):
        for (x0, y0), (x2, y2) in zip(single, multi, strict=True):
            assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert ds2.cache is not None and ds2.cache.complete()  # workers filled shared memory


def test_sampler_epochs_and_lengths(tmp_path: Path) -> None:
    for i in range(5):
        write_png(tmp_path / f"{i}.png", gradient())
    ds = ManifestDataset(_manifest(tmp_path, [f"{i}.png" for i in range(5)]), SMALL)
    loader = make_loader(ds, batch_size=2, shuffle=True, drop_last=True)
    assert len(loader) == 2
    sampler = loader.batch_sampler
    first, second = list(sampler), list(sampler)
    assert {e for batch in first for e, _ in batch} == {0}
    assert {e for batch in second for e, _ in batch} == {1}
    sampler.set_epoch(0)
    assert list(sampler) == first  # resumable: same epoch, same order
    x, y = next(iter(make_loader(ds, batch_size=4)))
    assert x.shape == (4, 3, 40, 60) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_default_dataloader_also_works(tmp_path: Path) -> None:
    for i in range(3):
        write_png(tmp_path / f"{i}.png", gradient())
    ds = ManifestDataset(_manifest(tmp_path, [f"{i}.png" for i in range(3)]), SMALL)
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert x.shape == (3, 3, 40, 60) and y.tolist() == [-1, -1, -1]


def test_undecodable_image_names_the_row(tmp_path: Path) -> None:
    write_png(tmp_path / "ok.png", gradient())
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # header fine, pixels cut
    ds = ManifestDataset(_manifest(tmp_path, ["ok.png", "cut.png"]), SMALL)
    with pytest.raises(UserError, match=r"manifest.csv: row 3: image could not be decoded"):
        ds[1]


def test_loader_on_real_mri(tmp_path: Path) -> None:
    paths = real_images(6)
    axial = paths[0].parent / REAL_AXIAL[0]
    names = [str(p) for p in [axial, *paths[1:6]]]
    path = _manifest(tmp_path, names, disc_state=[0, 1, 2, 0, 3, 0])
    ds = ManifestDataset(path, IMAGENET, target="disc_abnormal", roi="grid", decode_threads=2)
    x, y = next(iter(make_loader(ds, batch_size=6)))
    assert x.shape == (6, 3, 224, 224) and torch.isfinite(x).all()
    assert y.tolist() == [0, 1, 1, 0, 1, 0]
    # The first image equals the definition: Eq. 3 crop, bilinear resize, ImageNet mean/std.
    pixels = np.asarray(Image.open(axial).convert("L"))
    left, top, right, bottom = ds.roi.box(pixels.shape[1], pixels.shape[0])
    crop = Image.fromarray(pixels[top:bottom, left:right]).resize((224, 224), Image.BILINEAR)
    expected = _expected(np.asarray(crop), IMAGENET)
    assert np.abs(x[0].numpy() - expected).max() < 1e-4
    # MRI intensities survive: the crop is neither blank nor saturated.
    assert 0.05 < (np.asarray(crop) / 255).mean() < 0.8
    # A whole real manifest validates (headers of all real files read).
    assert len(read_manifest(path)) == 6


def test_disc_roi_is_placed_per_row_and_checked_up_front(tmp_path: Path) -> None:
    image = np.zeros((40, 60), dtype=np.uint8)
    image[18:22, 28:32] = 250  # the "disc" around pixel (29.5, 19.5), 1 mm pixels
    write_png(tmp_path / "a.png", image)
    placed = _manifest(
        tmp_path, ["a.png"], disc_x=[29.5], disc_y=[19.5], row_spacing_mm=[1], col_spacing_mm=[1]
    )
    ds = ManifestDataset(placed, SMALL, roi="disc:8", cache="none")
    pixels = ds.fetch_uint8(np.array([0]))[0, 0]  # 8 mm -> 224 px -> resized to 40x60
    assert pixels.shape == (40, 60)
    assert pixels[20, 30] == 250 and pixels[1, 1] < 100  # the disc fills the middle only
    unplaced = _manifest(tmp_path, ["a.png"], disc_x=[""], disc_y=[""])
    with pytest.raises(UserError, match="row 2: ROI disc:8 needs the disc position"):
        ManifestDataset(unplaced, SMALL, roi="disc:8", cache="none")
