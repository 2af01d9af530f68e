"""Where a DICOM image lies in the patient: pixels to millimetres and back, plane distances, angles.

Pure numpy on the three geometry tags, so that the disc localiser, axial selection and the
disc-centred ROI share one reading of them. DICOM's conventions (PS3.3 C.7.6.2.1.1):
ImagePositionPatient is the centre of the first pixel (row 0, column 0); the first three
cosines of ImageOrientationPatient point along a row (increasing column index), the last three
down a column (increasing row index); PixelSpacing is (row spacing, column spacing), i.e. the
distance between rows first. Pixel coordinates here are (x = column, y = row) with pixel centres
at integers, as a pydicom `pixel_array[y, x]` indexes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lumbar.errors import UserError

UNIT_TOLERANCE = 1e-3  # |cosine vector| may differ from 1 by this much (rounded DS values)
ORTHOGONAL_TOLERANCE = 1e-3  # |row . column| at most this (about 0.06 degrees)


@dataclass(frozen=True)
class SlicePlane:
    """One image's plane in patient coordinates (mm), built by `SlicePlane.from_tags`.

    Attributes:
        origin: the centre of pixel (x=0, y=0), ImagePositionPatient.
        row_dir: unit vector along a row (x grows), ImageOrientationPatient[0:3].
        col_dir: unit vector down a column (y grows), ImageOrientationPatient[3:6].
        row_spacing: mm between neighbouring rows (PixelSpacing[0]), the step of y.
        col_spacing: mm between neighbouring columns (PixelSpacing[1]), the step of x.
    """

    origin: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    row_spacing: float
    col_spacing: float

    @classmethod
    def from_tags(
        cls,
        position: Sequence[float] | None,
        orientation: Sequence[float] | None,
        pixel_spacing: Sequence[float] | None,
    ) -> SlicePlane:
        """Validate the three tags' values and build the plane.

        Raises:
            UserError: a tag is missing, has the wrong number of values, is not finite, or
                describes no plane (cosines not unit length or not orthogonal, spacing <= 0).
        """
        pos = _floats("ImagePositionPatient", position, 3)
        ori = _floats("ImageOrientationPatient", orientation, 6)
        spacing = _floats("PixelSpacing", pixel_spacing, 2)
        row_dir, col_dir = ori[:3], ori[3:]
        for name, vector in (("row", row_dir), ("column", col_dir)):
            if abs(float(np.linalg.norm(vector)) - 1.0) > UNIT_TOLERANCE:
                raise UserError(
                    f"ImageOrientationPatient's {name} direction is not a unit vector "
                    "(degenerate geometry)"
                )
        if abs(float(np.dot(row_dir, col_dir))) > ORTHOGONAL_TOLERANCE:
            raise UserError(
                "ImageOrientationPatient's row and column directions are not orthogonal "
                "(degenerate geometry)"
            )
        if spacing[0] <= 0 or spacing[1] <= 0:
            raise UserError("PixelSpacing must be positive (degenerate geometry)")
        return cls(
            origin=pos,
            row_dir=row_dir / np.linalg.norm(row_dir),
            col_dir=col_dir / np.linalg.norm(col_dir),
            row_spacing=float(spacing[0]),
            col_spacing=float(spacing[1]),
        )

    @classmethod
    def from_dataset(cls, ds: Any) -> SlicePlane:
        """The plane of a single-frame image from a pydicom Dataset (or any object with the tags).

        Raises:
            UserError: as `from_tags`.
        """
        return cls.from_tags(
            getattr(ds, "ImagePositionPatient", None),
            getattr(ds, "ImageOrientationPatient", None),
            getattr(ds, "PixelSpacing", None),
        )

    @property
    def normal(self) -> np.ndarray:
        """Unit normal, row_dir x col_dir (DICOM's slice direction for a right-handed stack)."""
        n = np.cross(self.row_dir, self.col_dir)
        return n / np.linalg.norm(n)

    def pixel_to_patient(self, x: Any, y: Any) -> np.ndarray:
        """Patient coordinates (mm) of pixel positions; x = column, y = row (may be fractional).

        Returns an array of shape broadcast(x, y).shape + (3,).
        """
        x = np.asarray(x, dtype=float)[..., None]
        y = np.asarray(y, dtype=float)[..., None]
        return (
            self.origin + x * self.col_spacing * self.row_dir + y * self.row_spacing * self.col_dir
        )

    def patient_to_pixel(self, points: Any) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) pixel positions of points (..., 3) projected orthogonally onto the plane."""
        d = np.asarray(points, dtype=float) - self.origin
        x = d @ self.row_dir / self.col_spacing
        y = d @ self.col_dir / self.row_spacing
        return x, y

    def signed_distance(self, points: Any) -> np.ndarray:
        """Signed distance (mm) from the plane to points (..., 3), positive along `normal`."""
        return (np.asarray(points, dtype=float) - self.origin) @ self.normal

    def angle_to_normal(self, direction: Any) -> float:
        """Angle in degrees (0-90) between this plane and a plane whose normal is `direction`.

        Raises:
            UserError: `direction` has zero length.
        """
        return plane_angle_deg(self.normal, direction)


def plane_angle_deg(normal_a: Any, normal_b: Any) -> float:
    """Angle in degrees (0-90) between two planes given by their normals (any length, any sign).

    Raises:
        UserError: a normal has zero length.
    """
    a = np.asarray(normal_a, dtype=float)
    b = np.asarray(normal_b, dtype=float)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0 or not (math.isfinite(na) and math.isfinite(nb)):
        raise UserError("a plane normal has zero length (degenerate geometry)")
    cosine = min(1.0, abs(float(np.dot(a, b))) / (na * nb))
    return math.degrees(math.acos(cosine))


def spine_axes(centres: Any) -> np.ndarray:
    """Local spine axis (unit vectors, (N, 3)) at N disc centres ordered along the spine.

    A disc's plane is roughly perpendicular to the spine, so the axis approximates the disc plane's
    normal: the direction between its two neighbours (central difference), or to its only
    neighbour at either end. The sign follows the order of `centres`.

    Raises:
        UserError: fewer than two centres, or two neighbours at the same place.
    """
    c = np.asarray(centres, dtype=float)
    if c.ndim != 2 or c.shape[1] != 3 or len(c) < 2:
        raise UserError("the spine axis needs at least two disc centres (3D points)")
    forward = np.empty_like(c)
    forward[1:-1] = c[2:] - c[:-2]
    forward[0] = c[1] - c[0]
    forward[-1] = c[-1] - c[-2]
    lengths = np.linalg.norm(forward, axis=1)
    if np.any(lengths == 0.0) or not np.all(np.isfinite(lengths)):
        raise UserError("two neighbouring disc centres coincide (degenerate geometry)")
    return forward / lengths[:, None]


def _floats(name: str, values: Sequence[float] | None, count: int) -> np.ndarray:
    """The tag's values as a float array of `count`, or a UserError naming the tag."""
    if values is None:
        raise UserError(f"{name} is missing (no image geometry)")
    try:
        array = np.asarray([float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        raise UserError(f"{name} is not numeric") from None
    if array.shape != (count,):
        raise UserError(f"{name} has {array.size} values, expected {count}")
    if not np.all(np.isfinite(array)):
        raise UserError(f"{name} is not finite")
    return array
