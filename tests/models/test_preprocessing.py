"""`Preprocessing`: validated at construction, folds normalisation into one multiply-add."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lumbar.models.preprocessing import CAFFE, IMAGENET, TF_127, Preprocessing


def test_affine_matches_the_definition() -> None:
    for p in (IMAGENET, CAFFE, TF_127):
        scale, offset = p.affine()
        for c in range(p.num_channels):
            v = np.array([0.0, 128.0, 255.0])
            expected = (v / 255 * p.pixel_range - p.mean[c]) / p.std[c]
            assert np.allclose(v * scale[c] + offset[c], expected)


def test_round_trip_and_sidecar(tmp_path: Path) -> None:
    assert Preprocessing.from_dict(CAFFE.to_dict()) == CAFFE
    sidecar = tmp_path / "w.pth.json"
    sidecar.write_text(json.dumps({"preprocessing": TF_127.to_dict(), "licence": "x"}))
    assert Preprocessing.from_json(sidecar) == TF_127


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": (224,)}, "input_size must be two positive integers"),
        ({"input_size": (0, 224)}, "input_size must be two positive integers"),
        ({"channels": "rgba"}, "channels must be one of rgb, bgr, gray"),
        ({"pixel_range": 0}, "pixel_range must be a positive number"),
        ({"mean": (0.5,)}, "mean has 1 values but channels='rgb' needs 3"),
        ({"std": (1.0, 0.0, 1.0)}, "std values must be > 0"),
        ({"channels": "gray"}, "mean has 3 values but channels='gray' needs 1"),
        ({"interpolation": "area"}, "interpolation must be one of"),
    ],
)
def test_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        Preprocessing(**kwargs)


def test_unknown_field() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing field"):
        Preprocessing.from_dict({"input_size": [224, 224], "crop_pct": 0.875})


def test_gray() -> None:
    p = Preprocessing(channels="gray", mean=(0.5,), std=(0.25,))
    assert p.num_channels == 1 and p.cache_key() == "224x224-gray-bilinear"
