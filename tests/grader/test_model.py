"""The bundled sagittal grader: loads offline, calibrated probabilities for every target on
real SPIDER slices, higher p_abnormal for SPIDER's abnormal discs, Grad-CAM per disc, one-line
errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lumbar.data.imageio import read_uint8
from lumbar.data.spider import read_spider
from lumbar.errors import UserError
from lumbar.grader.model import BUNDLED_MODEL, load_grader, save_grader
from lumbar.grading import SAGITTAL_FINDINGS
from tests.helpers.shared_data import SHARED_DATA

SPIDER = SHARED_DATA / "spider-sagittal"
needs_spider = pytest.mark.skipif(
    not SPIDER.is_dir(), reason=f"real SPIDER slices not found at {SPIDER}"
)


@pytest.fixture(scope="module")
def grader():  # type: ignore[no-untyped-def]
    return load_grader()


@pytest.fixture(scope="module")
def real_slices() -> list:
    slices = read_spider(SPIDER)
    # a handful of slices of different patients, sequences and scanners
    return [slices[i] for i in (0, 17, 40, 63, 90, 121)]


def test_bundled_model_is_a_small_file_in_the_package() -> None:
    assert BUNDLED_MODEL.is_file()
    assert BUNDLED_MODEL.stat().st_size < 1_000_000  # the heads only: the trunk is not in it
    assert (BUNDLED_MODEL.parent / "MODEL_CARD.md").is_file()


@needs_spider
def test_real_slices_get_calibrated_probabilities_for_every_target(grader, real_slices) -> None:  # type: ignore[no-untyped-def]
    batch = [
        (read_uint8(s.image), [(d.level, *d.centre) for d in s.discs], s.spacing_mm)
        for s in real_slices
    ]
    results = grader.grade_batch(batch)
    assert [len(r) for r in results] == [len(s.discs) for s in real_slices]
    for slice_results, s in zip(results, real_slices, strict=True):
        for r, d in zip(slice_results, s.discs, strict=True):
            assert r.level == d.level and (r.x, r.y) == d.centre
            assert 0.0 <= r.p_abnormal <= 1.0
            assert set(r.findings) == set(SAGITTAL_FINDINGS)
            assert all(0.0 <= p <= 1.0 for p in r.findings.values())
            assert len(r.pfirrmann_probabilities) == 5
            assert sum(r.pfirrmann_probabilities) == pytest.approx(1.0, abs=1e-6)
            assert r.pfirrmann == 1 + int(np.argmax(r.pfirrmann_probabilities))
    # batching across slices changes nothing
    alone = grader.grade(*batch[1])
    assert [r.p_abnormal for r in alone] == pytest.approx(
        [r.p_abnormal for r in results[1]], abs=1e-5
    )
    # calibrated: neither all near 0/1 nor all near 0.5
    p = np.array([r.p_abnormal for rs in results for r in rs])
    assert 0.05 < p.mean() < 0.95 and p.std() > 0.1


@needs_spider
def test_abnormal_discs_score_higher_on_average(grader, real_slices) -> None:  # type: ignore[no-untyped-def]
    """A behavioural check that can fail (these slices were among the training data)."""
    normal, abnormal = [], []
    for s in real_slices:
        results = grader.grade(read_uint8(s.image), [(d.level, *d.centre) for d in s.discs],
                               s.spacing_mm)  # fmt: skip
        for r, d in zip(results, s.discs, strict=True):
            (abnormal if d.abnormal else normal).append(r.p_abnormal)
    assert len(normal) >= 5 and len(abnormal) >= 5
    assert np.mean(abnormal) > np.mean(normal) + 0.15


@needs_spider
def test_gradcam_per_disc_and_crop_corners(grader, real_slices) -> None:  # type: ignore[no-untyped-def]
    s = real_slices[0]
    image = read_uint8(s.image)
    results = grader.grade(image, [(d.level, *d.centre) for d in s.discs[:2]], s.spacing_mm,
                           gradcam=True)  # fmt: skip
    size = grader.variant.size
    for r, d in zip(results, s.discs[:2], strict=True):
        assert r.heatmap is not None and r.heatmap.shape == (size, size)
        assert r.heatmap.min() >= 0.0 and r.heatmap.max() <= 1.0
        corners = np.array(r.crop_corners)
        assert corners.shape == (4, 2)
        np.testing.assert_allclose(corners.mean(axis=0), d.centre, atol=1.0)  # centred
    plain = grader.grade(image, [(d.level, *d.centre) for d in s.discs[:2]], s.spacing_mm)
    assert plain[0].heatmap is None
    assert plain[0].p_abnormal == pytest.approx(results[0].p_abnormal)


def test_phantom_and_bad_input(grader, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    phantom = rng.integers(0, 255, (200, 160)).astype(np.float32) * 10  # not 8-bit: stretched
    discs = [("L4-L5", 80.0, 90.0), ("L5-S1", 82.0, 130.0)]
    results = grader.grade(phantom, discs, (0.8, 0.8))
    assert len(results) == 2 and all(0 <= r.p_abnormal <= 1 for r in results)
    assert grader.grade(phantom, [], (0.8, 0.8)) == []
    with pytest.raises(UserError, match="unknown disc level"):
        grader.grade(phantom, [("L7-L8", 1.0, 1.0)], (0.8, 0.8))
    with pytest.raises(UserError, match="2-D"):
        grader.grade(np.zeros((2, 3, 4, 5)), discs, (0.8, 0.8))
    with pytest.raises(UserError, match="no grader model"):
        load_grader(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot read grader model"):
        load_grader(bad)
    # one member alone (a third of the compute) is a grader of its own
    single = load_grader(members=[1])
    assert len(single.members) == 1 and len(grader.members) == 3
    assert 0 <= single.grade(phantom, discs, (0.8, 0.8))[0].p_abnormal <= 1
    with pytest.raises(UserError, match="has 3 members"):
        load_grader(members=[7])
    # a saved copy loads back the same
    members = [(m.head, m.recipe) for m in grader.members]
    copy = save_grader(tmp_path / "copy" / "grader.safetensors", members, {})
    again = load_grader(copy.parent)
    assert again.grade(phantom, discs, (0.8, 0.8))[0].p_abnormal == pytest.approx(
        results[0].p_abnormal, abs=1e-3
    )
