"""Decoding on hand-made heat maps: peaks, order, naming up from L5-S1, unnamed discs."""

from __future__ import annotations

import numpy as np

from lumbar.grading import SPINE_LEVELS
from lumbar.localize.decode import Decoding, decode, find_peaks
from lumbar.localize.model import STRIDE
from lumbar.localize.preprocess import Letterbox

G = 40
IDENTITY = Letterbox(scale=1.0, pad_x=0.0, pad_y=0.0)
DECODING = Decoding(detect=0.3, anchor=0.3)


def heat_maps(
    cells: list[tuple[float, float]], anchor_cell: tuple[float, float] | None, score: float = 0.9
) -> np.ndarray:
    """(4, G, G) network output: Gaussians at `cells` (x, y in cell units), L5-S1 at one."""
    out = np.zeros((4, G, G), dtype=np.float32)
    yy, xx = np.mgrid[0:G, 0:G]
    for cx, cy in cells:
        out[0] = np.maximum(out[0], score * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 2))
    if anchor_cell is not None:
        ax, ay = anchor_cell
        out[1] = 0.9 * np.exp(-((xx - ax) ** 2 + (yy - ay) ** 2) / 2)
    return out


def to_pixels(cell: tuple[float, float]) -> tuple[float, float]:
    return ((cell[0] + 0.5) * STRIDE - 0.5, (cell[1] + 0.5) * STRIDE - 0.5)


def test_peaks_land_on_the_cell_centres_plus_offsets() -> None:
    out = heat_maps([(10, 12)], None)
    out[2, 12, 10], out[3, 12, 10] = 0.25, -0.5
    (peak,) = find_peaks(out, IDENTITY)
    assert (peak.x, peak.y) == to_pixels((10.25, 11.5))
    assert abs(peak.score - 0.9) < 1e-6


def test_lumbar_discs_are_named_upward_from_l5_s1() -> None:
    cells = [(20, 6 + 5 * k) for k in range(5)]  # L1-L2 ... L5-S1
    discs = decode(heat_maps(cells, cells[-1]), IDENTITY, DECODING)
    assert [d.level for d in discs] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert [(d.x, d.y) for d in discs] == [to_pixels(c) for c in cells]


def test_thoracic_field_of_view_counts_from_the_bottom_not_the_top() -> None:
    cells = [(20, 2 + 4 * k) for k in range(9)]  # T9-T10 ... L5-S1
    discs = decode(heat_maps(cells, cells[-1]), IDENTITY, DECODING)
    assert [d.level for d in discs] == list(SPINE_LEVELS)
    # a field of view showing more than T9-T10: the extra top disc is found, not named
    cells = [(20, 1 + 3.8 * k) for k in range(10)]
    discs = decode(heat_maps(cells, cells[-1]), IDENTITY, DECODING)
    assert discs[0].level is None
    assert [d.level for d in discs[1:]] == list(SPINE_LEVELS)


def test_cut_sacrum_leaves_every_disc_unnamed() -> None:
    cells = [(20, 10 + 6 * k) for k in range(4)]
    discs = decode(heat_maps(cells, None), IDENTITY, DECODING)
    assert len(discs) == 4
    assert all(d.level is None for d in discs)


def test_a_disc_below_the_anchor_is_not_named() -> None:
    cells = [(20, 6 + 6 * k) for k in range(5)]
    discs = decode(heat_maps(cells, cells[3]), IDENTITY, DECODING)
    assert [d.level for d in discs] == ["L2-L3", "L3-L4", "L4-L5", "L5-S1", None]


def test_a_missed_disc_skips_a_level() -> None:
    cells = [(20, 4 + 5 * k) for k in range(7)]
    del cells[2]  # L1-L2 missed between T12-L1 and L2-L3
    discs = decode(heat_maps(cells, cells[-1]), IDENTITY, DECODING)
    assert [d.level for d in discs] == ["T11-T12", "T12-L1", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]


def test_weak_maps_give_no_discs() -> None:
    cells = [(20, 6 + 5 * k) for k in range(5)]
    assert decode(heat_maps(cells, cells[-1], score=0.2), IDENTITY, DECODING) == []
    assert decode(np.zeros((4, G, G), dtype=np.float32), IDENTITY, DECODING) == []


def test_two_maxima_closer_than_the_minimum_gap_are_one_disc() -> None:
    cells = [(20, 10), (20, 13), (20, 17), (20, 22), (20, 27)]
    out = heat_maps(cells, cells[-1])
    assert len(decode(out, IDENTITY, DECODING)) == 5  # 3 cells: more than 0.4 x the median gap
    assert len(decode(out, IDENTITY, DECODING, min_gap_px=3.5 * STRIDE)) == 4
    close = heat_maps([(20, 10), (20, 12), (20, 22), (20, 32)], (20, 32))
    assert len(decode(close, IDENTITY, DECODING)) == 3  # 2 cells: less than 0.4 x 10


def test_confidences_follow_the_calibration_maps() -> None:
    cells = [(20, 6 + 5 * k) for k in range(5)]
    calibrated = Decoding(named_x=(0.0, 1.0), named_y=(0.0, 0.5))
    discs = decode(heat_maps(cells, cells[-1]), IDENTITY, calibrated)
    assert all(abs(d.confidence - 0.5 * 0.9 * 0.9) < 0.02 for d in discs)


def test_a_split_l5_s1_map_picks_the_lower_disc_with_a_ratio() -> None:
    cells = [(20, 6 + 5 * k) for k in range(5)]
    out = heat_maps(cells, cells[3])  # strongest L5-S1 score on the fourth disc
    yy, xx = np.mgrid[0:G, 0:G]
    out[1] = np.maximum(out[1], 0.6 * np.exp(-((xx - 20) ** 2 + (yy - 26) ** 2) / 2))
    argmax = decode(out, IDENTITY, Decoding(detect=0.3, anchor=0.3, anchor_ratio=1.0))
    assert argmax[-1].level is None and argmax[-2].level == "L5-S1"
    lowest = decode(out, IDENTITY, Decoding(detect=0.3, anchor=0.3, anchor_ratio=0.6))
    assert [d.level for d in lowest][-2:] == ["L4-L5", "L5-S1"]


def test_no_room_for_a_sacrum_below_the_lowest_disc_leaves_it_unnamed() -> None:
    cells = [(20, 6 + 5 * k) for k in range(5)]  # lowest disc at row cell 26: pixel 105.5
    out = heat_maps(cells, cells[-1])
    gap = 5 * STRIDE
    roomy = decode(out, IDENTITY, DECODING, height=106.5 + 0.9 * gap)
    assert roomy[-1].level == "L5-S1"
    cut = decode(out, IDENTITY, DECODING, height=106.5 + 0.5 * gap)
    assert [d.level for d in cut] == [None] * 5


def test_peaks_off_the_spine_are_dropped() -> None:
    cells = [(20 + 0.05 * (k - 4) ** 2, 3 + 4 * k) for k in range(9)]  # a gentle lordosis
    out = heat_maps(cells, cells[-1])
    yy, xx = np.mgrid[0:G, 0:G]
    out[0] = np.maximum(out[0], 0.4 * np.exp(-((xx - 6) ** 2 + (yy - 17) ** 2) / 2))  # bowel
    discs = decode(out, IDENTITY, DECODING)
    assert [d.level for d in discs] == list(SPINE_LEVELS)
