"""The pointing game (`lumbar.explain.pointing`) and its random-point baseline."""

from __future__ import annotations

import numpy as np
import pytest

from lumbar.explain import box_share, point_in_box, pointing_game


def test_pointing_game_and_random_baseline() -> None:
    heat = np.zeros((10, 10), dtype=np.float32)
    heat[2, 7] = 1.0  # peak at pixel centre (7.5, 2.5) of a 10x10 image; (15, 5) at 20x20
    assert point_in_box(heat, (6, 1, 9, 4), (10, 10)) == (True, (7.5, 2.5))
    assert point_in_box(heat, (14, 4, 16, 6), (20, 20))[0]
    assert not point_in_box(heat, (0, 0, 5, 5), (10, 10))[0]
    assert box_share((0, 0, 5, 5), (10, 10)) == pytest.approx(0.25)
    assert box_share((-5, 5, 5, 20), (10, 10)) == pytest.approx(0.25)  # clipped
    game = pointing_game([heat, heat], [(6, 1, 9, 4), (0, 0, 5, 5)], [(10, 10)] * 2)
    assert (game.hits, game.lesions, game.hit_rate) == (1, 2, 0.5)
    assert game.random_baseline == pytest.approx((0.09 + 0.25) / 2)
    lenient = pointing_game([heat], [(0, 0, 5, 5)], [(10, 10)], tolerance=3)
    assert lenient.hits == 1 and lenient.random_baseline == pytest.approx(0.64)
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game([heat], [(0, 0, 5, 5)], [(10, 10)], tolerance=-1)
