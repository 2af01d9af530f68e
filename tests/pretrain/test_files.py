"""Discovery of pretraining images: nested trees, DICOM without a suffix, class maps, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lumbar.errors import UserError
from lumbar.pretrain.dataset import ImageFileDataset, SimCLRAugmentation, decode_gray
from lumbar.pretrain.files import iter_image_files, scan_images, scan_labelled
from lumbar.pretrain.supervised import split_files


def _png(path: Path, value: int = 100, size: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)


def test_discovery_walks_nested_folders_in_a_fixed_order(unlabelled_set: Path) -> None:
    found = list(iter_image_files(unlabelled_set))
    assert len(found) == 16
    assert found == list(iter_image_files(unlabelled_set))  # deterministic
    dicom = [p for p in found if "/SE" in p]
    assert dicom and all(Path(p).suffix == "" for p in dicom)  # IM00001: found by DICM preamble
    assert any(p.endswith(".png") for p in found)
    assert all(p.count("/") >= 1 for p in found)  # nested below batch-000/
    pixels = decode_gray(str(unlabelled_set / dicom[0]))
    assert pixels.dtype == np.uint8 and pixels.ndim == 2 and pixels.max() > 0


def test_discovery_skips_other_files_and_hidden_ones(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "x.png")
    _png(tmp_path / "a" / "b" / "y.tif")
    _png(tmp_path / ".hidden" / "z.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / "IM0001").write_bytes(b"\0" * 200)  # no suffix, no DICM: not an image
    assert list(iter_image_files(tmp_path)) == ["a/x.png", "a/b/y.tif"]


def test_max_images_is_a_stable_subset(unlabelled_set: Path) -> None:
    everything = scan_images([unlabelled_set])
    subset = scan_images([unlabelled_set], max_images=5, seed=1)
    assert len(subset) == 5 and set(subset.paths) <= set(everything.paths)
    assert subset.paths == scan_images([unlabelled_set], max_images=5, seed=1).paths
    assert subset.paths != scan_images([unlabelled_set], max_images=5, seed=2).paths


def test_max_images_subset_does_not_move_with_the_folder(
    unlabelled_set: Path, tmp_path: Path
) -> None:
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.copytree(unlabelled_set, moved)
    here = scan_images([unlabelled_set], max_images=5, seed=1).paths
    there = scan_images([moved], max_images=5, seed=1).paths
    assert [Path(p).relative_to(unlabelled_set) for p in here] == [
        Path(p).relative_to(moved) for p in there
    ]


def test_empty_or_missing_folders_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        scan_images([tmp_path / "empty"])
    with pytest.raises(UserError, match="does not exist"):
        scan_images([tmp_path / "nowhere"])


def test_unreadable_files_are_reported_not_fatal(tmp_path: Path) -> None:
    from lumbar.models.preprocessing import Preprocessing
    from lumbar.pretrain.dataset import collate

    _png(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    files = scan_images([tmp_path])
    data = ImageFileDataset(files.paths, Preprocessing(input_size=(16, 16)))
    batch = collate([data[(0, i)] for i in range(len(data))])
    assert batch.failed == [files.paths.index(str(tmp_path / "broken.png"))]
    assert batch.images.shape == (1, 3, 16, 16)


def test_class_map_groups_folders_as_the_paper_does(source_set: Path) -> None:
    files = scan_labelled([source_set])  # its classes.yaml: 3 tumour folders -> abnormal
    assert files.class_names == ["normal", "abnormal"]
    assert files.class_counts() == [4, 12]
    assert files.folder_counts == {"glioma": 4, "meningioma": 4, "pituitary": 4, "no_tumor": 4}


def test_without_a_map_each_folder_is_a_class(tmp_path: Path) -> None:
    for name in ("b", "a"):
        _png(tmp_path / name / "1.png")
    files = scan_labelled([tmp_path])
    assert files.class_names == ["a", "b"] and files.labels == [0, 1]


def test_roots_merge_by_folder_name(tmp_path: Path) -> None:
    for root in ("r1", "r2"):
        _png(tmp_path / root / "normal" / "1.png")
        _png(tmp_path / root / "tumour" / "1.png")
    files = scan_labelled([tmp_path / "r1", tmp_path / "r2"])
    assert files.class_counts() == [2, 2]
    assert files.folder_counts == {"normal": 2, "tumour": 2}


def test_class_map_naming_missing_folders_is_an_error_naming_them(
    source_set: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("glioma: abnormal\nastrocytoma: abnormal\nhealthy: normal\n")
    with pytest.raises(UserError, match=r"2 folder\(s\) not found.*astrocytoma, healthy"):
        scan_labelled([source_set], bad)


def test_single_class_is_an_error(source_set: Path, tmp_path: Path) -> None:
    one = tmp_path / "map.yaml"
    one.write_text("glioma: abnormal\nmeningioma: abnormal\n")
    with pytest.raises(UserError, match="only one class"):
        scan_labelled([source_set], one)


def test_unmapped_and_empty_folders_are_warnings_with_counts(
    source_set: Path, tmp_path: Path
) -> None:
    part = tmp_path / "map.yaml"
    part.write_text("glioma: abnormal\nno_tumor: normal\n")
    files = scan_labelled([source_set], part)
    assert len(files) == 8
    assert any("2 folder(s) not in class map" in w for w in files.warnings)
    root = tmp_path / "with-empty"
    _png(root / "a" / "1.png")
    _png(root / "b" / "1.png")
    (root / "c").mkdir()
    assert any("1 class folder(s) hold no images: c" in w for w in scan_labelled([root]).warnings)


def test_split_is_deterministic_and_stable_when_files_are_added() -> None:
    keys = [f"class/{i:05d}.png" for i in range(2000)]
    train, val = split_files(keys, 0.15, seed=0)
    assert abs(len(val) / len(keys) - 0.15) < 0.03
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(keys)))
    more = keys + [f"class/new-{i}.png" for i in range(500)]
    _, val_more = split_files(more, 0.15, seed=0)
    assert set(val.tolist()) == {i for i in val_more.tolist() if i < len(keys)}
    _, val_other = split_files(keys, 0.15, seed=1)
    assert set(val.tolist()) != set(val_other.tolist())


def test_simclr_views_are_seeded_and_differ() -> None:
    pixels = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    aug = SimCLRAugmentation()
    a = aug.view(pixels, (32, 32), np.random.default_rng([0, 0, 1, 0]))
    b = aug.view(pixels, (32, 32), np.random.default_rng([0, 0, 1, 0]))
    c = aug.view(pixels, (32, 32), np.random.default_rng([0, 0, 1, 1]))
    assert a.shape == (32, 32) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 255.0
    with pytest.raises(ValueError, match="crop_scale"):
        SimCLRAugmentation(crop_scale=(0.9, 0.2))


def test_real_mri_pngs_decode(real_mri_dir: Path) -> None:
    files = scan_images([real_mri_dir], max_images=4)
    assert len(files) == 4
    for path in files.paths:
        pixels = decode_gray(path)
        assert pixels.ndim == 2 and pixels.dtype == np.uint8 and pixels.std() > 5
