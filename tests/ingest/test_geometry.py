"""DICOM image geometry: hand-computed examples for pixel <-> patient, distances and angles."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from lumbar.errors import UserError
from lumbar.ingest.geometry import SlicePlane, plane_angle_deg, spine_axes

# A sagittal image: rows run towards the patient's posterior (+y), columns run down (-z).
SAGITTAL = ((10.0, -100.0, 200.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (0.5, 0.8))


def test_pixel_spacing_order_is_row_spacing_then_column_spacing() -> None:
    plane = SlicePlane.from_tags(*SAGITTAL)
    # x = column 10 moves 10 * column spacing (0.8 mm) along the row direction (+y);
    # y = row 4 moves 4 * row spacing (0.5 mm) along the column direction (-z).
    np.testing.assert_allclose(plane.pixel_to_patient(10, 4), [10.0, -92.0, 198.0])
    np.testing.assert_allclose(plane.pixel_to_patient(0, 0), [10.0, -100.0, 200.0])


def test_patient_to_pixel_inverts_pixel_to_patient_for_arrays() -> None:
    plane = SlicePlane.from_tags(*SAGITTAL)
    xs = np.array([0.0, 3.5, 255.0])
    ys = np.array([1.0, 7.25, 100.0])
    x, y = plane.patient_to_pixel(plane.pixel_to_patient(xs, ys))
    np.testing.assert_allclose(x, xs)
    np.testing.assert_allclose(y, ys)


def test_a_point_off_the_plane_projects_orthogonally_and_has_signed_distance() -> None:
    plane = SlicePlane.from_tags(*SAGITTAL)
    # normal = (0,1,0) x (0,0,-1) = (-1, 0, 0); the point is 3 mm to +x of the plane.
    np.testing.assert_allclose(plane.normal, [-1.0, 0.0, 0.0])
    point = np.array([13.0, -92.0, 198.0])
    assert plane.signed_distance(point) == pytest.approx(-3.0)
    x, y = plane.patient_to_pixel(point)
    assert (float(x), float(y)) == pytest.approx((10.0, 4.0))


def test_axial_plane_distance_and_tilted_plane_angle() -> None:
    axial = SlicePlane.from_tags((0, 0, 50), (1, 0, 0, 0, 1, 0), (1, 1))
    np.testing.assert_allclose(axial.normal, [0, 0, 1])
    dists = axial.signed_distance([[5, 5, 52.5], [0, 0, 40]])
    np.testing.assert_allclose(dists, [2.5, -10.0])
    # Tilt the column direction 30 degrees about x: the normal tilts 30 degrees from z.
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    tilted = SlicePlane.from_tags((0, 0, 50), (1, 0, 0, 0, c, s), (1, 1))
    assert tilted.angle_to_normal([0, 0, 1]) == pytest.approx(30.0)
    assert tilted.angle_to_normal([0, 0, -7]) == pytest.approx(30.0)  # sign and length ignored
    # A point 10 mm above the origin along z lies 10 * cos(30) mm from the tilted plane.
    assert tilted.signed_distance([0, 0, 60]) == pytest.approx(10 * c)


def test_plane_angle_between_perpendicular_planes_is_90() -> None:
    assert plane_angle_deg([1, 0, 0], [0, 0, 2]) == pytest.approx(90.0)
    with pytest.raises(UserError, match="zero length"):
        plane_angle_deg([0, 0, 0], [0, 0, 1])


def test_spine_axes_use_neighbours_central_difference() -> None:
    centres = [[0, 0, 0], [0, 3, 4], [0, 3, 14]]
    axes = spine_axes(centres)
    np.testing.assert_allclose(axes[0], [0, 0.6, 0.8])
    # middle: (0,3,14) - (0,0,0) normalised
    np.testing.assert_allclose(axes[1], np.array([0, 3, 14]) / math.hypot(3, 14))
    np.testing.assert_allclose(axes[2], [0, 0, 1])
    with pytest.raises(UserError, match="at least two"):
        spine_axes([[0, 0, 0]])
    with pytest.raises(UserError, match="coincide"):
        spine_axes([[1, 1, 1], [1, 1, 1]])


def test_from_dataset_reads_the_three_tags() -> None:
    ds = SimpleNamespace(
        ImagePositionPatient=["1", "2", "3"],
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
        PixelSpacing=["0.7", "0.7"],
    )
    plane = SlicePlane.from_dataset(ds)
    np.testing.assert_allclose(plane.pixel_to_patient(1, 2), [1.7, 3.4, 3.0])


@pytest.mark.parametrize(
    ("position", "orientation", "spacing", "message"),
    [
        (None, (1, 0, 0, 0, 1, 0), (1, 1), "ImagePositionPatient is missing"),
        ((0, 0, 0), None, (1, 1), "ImageOrientationPatient is missing"),
        ((0, 0, 0), (1, 0, 0, 0, 1, 0), None, "PixelSpacing is missing"),
        ((0, 0), (1, 0, 0, 0, 1, 0), (1, 1), "has 2 values, expected 3"),
        ((0, 0, "a"), (1, 0, 0, 0, 1, 0), (1, 1), "not numeric"),
        ((0, 0, float("nan")), (1, 0, 0, 0, 1, 0), (1, 1), "not finite"),
        ((0, 0, 0), (0, 0, 0, 0, 1, 0), (1, 1), "row direction is not a unit vector"),
        ((0, 0, 0), (1, 0, 0, 1, 0, 0), (1, 1), "not orthogonal"),
        ((0, 0, 0), (1, 0, 0, 0, 1, 0), (0, 1), "must be positive"),
    ],
)
def test_missing_or_degenerate_tags_are_one_clear_user_error(
    position: object, orientation: object, spacing: object, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        SlicePlane.from_tags(position, orientation, spacing)  # type: ignore[arg-type]
