"""A float image in millimetre coordinates with soft-edged shapes drawn only inside their boxes.

Edges are anti-aliased over one pixel (partial-volume effect), and each shape touches only the
pixels of its bounding box, which keeps a 512x512 slice with dozens of structures fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Pixel grid of a slice: `shape` (rows, cols), pixel `spacing` (mm) and the mm centre."""

    shape: tuple[int, int]
    spacing: float
    center: tuple[float, float] = (0.0, 0.0)

    def coords(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Millimetre (u, v) coordinates of the pixel centres in rows r0:r1, cols c0:c1."""
        rows, cols = self.shape
        u = (np.arange(c0, c1, dtype=np.float32) - (cols - 1) / 2) * self.spacing + self.center[0]
        v = (np.arange(r0, r1, dtype=np.float32) - (rows - 1) / 2) * self.spacing + self.center[1]
        return u[None, :], v[:, None]

    def box(self, u0: float, v0: float, u1: float, v1: float) -> tuple[int, int, int, int] | None:
        """Pixel bounds (r0, r1, c0, c1) of a mm box, clipped to the image; None if outside."""
        rows, cols = self.shape
        c0 = math.floor((u0 - self.center[0]) / self.spacing + (cols - 1) / 2) - 1
        c1 = math.ceil((u1 - self.center[0]) / self.spacing + (cols - 1) / 2) + 2
        r0 = math.floor((v0 - self.center[1]) / self.spacing + (rows - 1) / 2) - 1
        r1 = math.ceil((v1 - self.center[1]) / self.spacing + (rows - 1) / 2) + 2
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, cols), min(r1, rows)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1


class Canvas:
    """An image being painted: each shape blends its value over what lies beneath it."""

    def __init__(self, grid: Grid, background: float = 0.0, rotation: float = 0.0) -> None:
        self.grid = grid
        self.image = np.full(grid.shape, background, dtype=np.float32)
        self.rotation = rotation  # rad; the whole drawing is turned by this about the origin
        self._cos, self._sin = math.cos(rotation), math.sin(rotation)

    def _place(self, cu: float, cv: float) -> tuple[float, float]:
        """Where an anatomical point lands once the drawing's rotation is applied."""
        return self._cos * cu - self._sin * cv, self._sin * cu + self._cos * cv

    def _paint(self, box: tuple[int, int, int, int] | None, mask: np.ndarray, value: float) -> None:
        if box is None:
            return
        r0, r1, c0, c1 = box
        region = self.image[r0:r1, c0:c1]
        region += (np.float32(value) - region) * mask

    def _edge(self, signed_mm: np.ndarray) -> np.ndarray:
        """Coverage of a pixel from a signed distance (negative inside), smoothed over a pixel."""
        return np.clip(0.5 - signed_mm / self.grid.spacing, 0.0, 1.0)

    def ellipse(
        self,
        cu: float,
        cv: float,
        ru: float,
        rv: float,
        value: float,
        angle: float = 0.0,
        opacity: float = 1.0,
    ) -> None:
        """Filled ellipse centred at (cu, cv) mm with semi-axes ru, rv, rotated by `angle` rad."""
        if ru <= 0 or rv <= 0:
            return
        cu, cv = self._place(cu, cv)
        angle += self.rotation
        ca, sa = math.cos(angle), math.sin(angle)
        eu, ev = math.hypot(ru * ca, rv * sa), math.hypot(ru * sa, rv * ca)
        box = self.grid.box(cu - eu, cv - ev, cu + eu, cv + ev)
        if box is None:
            return
        u, v = self.grid.coords(*box)
        du, dv = u - cu, v - cv
        if angle:
            du, dv = ca * du + sa * dv, -sa * du + ca * dv
        norm = np.sqrt((du / ru) ** 2 + (dv / rv) ** 2)
        # first-order distance to the boundary: the level-set gap divided by its gradient
        grad = np.sqrt((du / (ru * ru)) ** 2 + (dv / (rv * rv)) ** 2) / np.maximum(norm, 1e-6)
        signed = (norm - 1.0) / np.maximum(grad, 1e-6)
        self._paint(box, self._edge(signed) * opacity, value)

    def rounded_rect(
        self,
        cu: float,
        cv: float,
        half_u: float,
        half_v: float,
        radius: float,
        value: float,
        angle: float = 0.0,
        opacity: float = 1.0,
    ) -> None:
        """Filled rectangle with rounded corners (exact signed distance), rotated by `angle`."""
        cu, cv = self._place(cu, cv)
        angle += self.rotation
        ca, sa = math.cos(angle), math.sin(angle)
        eu = abs(ca) * half_u + abs(sa) * half_v
        ev = abs(sa) * half_u + abs(ca) * half_v
        box = self.grid.box(cu - eu, cv - ev, cu + eu, cv + ev)
        if box is None:
            return
        u, v = self.grid.coords(*box)
        du, dv = u - cu, v - cv
        if angle:
            du, dv = ca * du + sa * dv, -sa * du + ca * dv
        radius = min(radius, half_u, half_v)
        qu = np.abs(du) - (half_u - radius)
        qv = np.abs(dv) - (half_v - radius)
        outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
        inside = np.minimum(np.maximum(qu, qv), 0)
        self._paint(box, self._edge(outside + inside - radius) * opacity, value)

    def polar(
        self,
        cu: float,
        cv: float,
        radius_fn: np.ndarray,
        value: float,
        scale: float = 1.0,
        opacity: float = 1.0,
    ) -> None:
        """Star-shaped region: boundary radius `radius_fn[k]` (mm) at angle 2πk/len, scaled.

        Angles follow the image: 0 points along +u (patient left), π/2 along +v (posterior).
        """
        radius_fn = np.asarray(radius_fn, dtype=np.float32) * scale
        cu, cv = self._place(cu, cv)
        reach = float(radius_fn.max())
        box = self.grid.box(cu - reach, cv - reach, cu + reach, cv + reach)
        if box is None:
            return
        u, v = self.grid.coords(*box)
        du, dv = u - cu, v - cv
        rho = np.sqrt(du * du + dv * dv)
        theta = (np.arctan2(dv, du) - self.rotation) % (2 * np.pi)
        n = radius_fn.size
        pos = theta * (n / (2 * np.pi))
        k0 = np.floor(pos).astype(np.int64) % n
        frac = pos - np.floor(pos)
        boundary = radius_fn[k0] * (1 - frac) + radius_fn[(k0 + 1) % n] * frac
        self._paint(box, self._edge(rho - boundary) * opacity, value)


def bias_field(shape: tuple[int, int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """Smooth multiplicative coil-sensitivity field (a low-order polynomial), mean about 1."""
    rows, cols = shape
    y = np.linspace(-1, 1, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, cols, dtype=np.float32)[None, :]
    a = rng.normal(0, 1, 6).astype(np.float32)
    field = (
        a[0] * x + a[1] * y + a[2] * x * y + a[3] * x * x + a[4] * y * y + 0.5 * a[5] * x * y * y
    )
    field /= max(float(np.abs(field).max()), 1e-6)
    return 1.0 + strength * field
