"""One phantom patient's MR study: every series, its frames, pixel data and patient geometry.

Geometry follows DICOM's patient coordinates (LPS: x to the patient's left, y posterior,
z superior), with the middle of L3 at the origin. Sagittal images have u = +y, v = -z;
axial stacks are tilted with their disc, so each level's ImageOrientationPatient differs, as
on a scanner that angles each stack along the disc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lumbar.grading import LEVELS, DiscLevel
from lumbar.synth import tissue as T
from lumbar.synth.axial import DiscLesion, disc_lesion, paint_axial_background, paint_axial_slice
from lumbar.synth.canvas import Canvas, Grid
from lumbar.synth.cohort import Patient
from lumbar.synth.coronal import paint_coronal_localiser, paint_myelogram
from lumbar.synth.imaging import Scanner, Signals, texture_bank
from lumbar.synth.protocols import AxialSeriesPlan, DiscPose, Protocol, plan_axial
from lumbar.synth.sagittal import BODY_HALF_AP, paint_sagittal, paint_sagittal_background
from lumbar.synth.sagittal import spine_curve as _spine_curve

Vector = tuple[float, float, float]
AXIAL_SLICES_PER_LEVEL = 5


@dataclass
class Frame:
    """One image: pixels plus where it lies in the patient."""

    pixels: np.ndarray  # uint16, rows x cols
    position: Vector  # ImagePositionPatient: centre of the first (top-left) pixel
    row_dir: Vector  # direction of increasing column index
    col_dir: Vector  # direction of increasing row index
    spacing: float  # mm per pixel
    lesion_px: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 of a disc lesion
    level: DiscLevel | None = None


@dataclass
class Series:
    """A series as a scanner would store it."""

    description: str
    number: int
    sequence: T.Sequence
    thickness: float
    spacing_between: float | None
    frames: list[Frame] = field(default_factory=list)
    localizer: bool = False
    flip_angle: float = 90.0


def _plane_position(centre: Vector, row: Vector, col: Vector, grid: Grid) -> Vector:
    """ImagePositionPatient of a grid whose mm centre lies at `centre` + the grid's offset."""
    rows, cols = grid.shape
    du = grid.center[0] - (cols - 1) / 2 * grid.spacing
    dv = grid.center[1] - (rows - 1) / 2 * grid.spacing
    return tuple(centre[i] + du * row[i] + dv * col[i] for i in range(3))  # type: ignore[return-value]


def _lesion_pixels(
    box_mm: tuple[float, float, float, float] | None, grid: Grid, rotation: float
) -> tuple[int, int, int, int] | None:
    """Pixel box (x0, y0, x1, y1) of a lesion given in unrotated anatomical mm."""
    if box_mm is None:
        return None
    u0, v0, u1, v1 = box_mm
    c, s = math.cos(rotation), math.sin(rotation)
    rows, cols = grid.shape
    xs, ys = [], []
    for u, v in ((u0, v0), (u0, v1), (u1, v0), (u1, v1)):
        ru, rv = c * u - s * v, s * u + c * v
        xs.append((ru - grid.center[0]) / grid.spacing + (cols - 1) / 2)
        ys.append((rv - grid.center[1]) / grid.spacing + (rows - 1) / 2)
    x0, x1 = max(0, math.floor(min(xs))), min(cols - 1, math.ceil(max(xs)))
    y0, y1 = max(0, math.floor(min(ys))), min(rows - 1, math.ceil(max(ys)))
    return (x0, y0, x1, y1)


class StudyBuilder:
    """Builds the series of one patient; each series has its own random stream."""

    def __init__(self, patient: Patient, protocol: Protocol = Protocol.PAPER) -> None:
        if protocol is Protocol.MIXED:
            raise ValueError("resolve 'mixed' per patient (protocols.patient_protocol) first")
        self.patient = patient
        self.protocol = protocol
        self.anatomy = patient.anatomy
        self.lesions: dict[DiscLevel, DiscLesion] = {
            level: disc_lesion(
                patient.grades[level],
                patient.anatomy,
                np.random.default_rng([patient.seed, patient.index, 1, k]),
            )
            for k, level in enumerate(LEVELS)
        }
        self.curve = _spine_curve(self.anatomy, self.lesions)
        self.t2 = T.Sequence(te=self.anatomy.te_t2, tr=self.anatomy.tr_t2)
        self.t1 = T.Sequence(te=self.anatomy.te_t1, tr=self.anatomy.tr_t1)
        self.gain = float(self._rng(0).uniform(0.7, 0.95))
        largest = max(self.anatomy.axial_matrix, self.anatomy.sagittal_matrix, 384)
        self.texture = texture_bank(largest * 3 // 2, self._rng(8))

    def _rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.patient.seed, self.patient.index, 2, stream])

    def _scanner(self, grid: Grid, rng: np.random.Generator, noise_scale: float = 1.0) -> Scanner:
        a = self.anatomy
        return Scanner(
            grid.shape,
            rng,
            noise=a.noise * noise_scale,
            bias=a.bias,
            texture=a.texture,
            gain=self.gain,
            texture_bank=self.texture,
        )

    def build(self) -> list[Series]:
        """All series of the study, numbered in a per-patient order like a real exam."""
        if self.protocol is Protocol.PAPER:
            series = [
                self.survey(),
                self.sagittal("T2 SAG", self.t2, self.anatomy.sagittal_frames, stream=2),
                self.sagittal("T1 SAG", self.t1, 11, stream=3),
                self.axial_t2(),
                self.myelo(),
            ]
        else:
            series = [self.survey()]
            if self.protocol is not Protocol.NOSAGT2:
                series.append(
                    self.sagittal("T2 SAG", self.t2, self.anatomy.sagittal_frames, stream=2)
                )
            series.append(self.sagittal("T1 SAG", self.t1, 11, stream=3))
            if self.protocol in (Protocol.NOSAGT2, Protocol.THORACIC, Protocol.CUTSACRUM):
                series.append(self.axial_t2())
            else:
                series.extend(self.axial_planned())
            series.append(self.myelo())
        order = [0, *(1 + self._rng(9).permutation(len(series) - 1))]  # survey first
        for number, index in enumerate(order, start=1):
            series[index].number = number
        return sorted(series, key=lambda s: s.number)

    def disc_poses(self) -> dict[DiscLevel, DiscPose]:
        """True centre and mid-plane normal of each lumbar disc, in patient coordinates."""
        poses = {}
        for level in LEVELS:
            seg = self.curve.discs[level]
            poses[level] = DiscPose(
                (0.0, seg.u, -seg.v), (0.0, math.sin(seg.tilt), math.cos(seg.tilt))
            )
        return poses

    def axial_planned(self) -> list[Series]:
        """The axial T2 series of a non-paper protocol (`protocols.plan_axial`)."""
        a = self.anatomy
        sig = Signals(self.t2)
        rng = self._rng(4)
        thickness = float(rng.uniform(3.0, 4.0))
        gap = thickness + float(rng.uniform(0.2, 0.8))
        plans = plan_axial(self.protocol, self.disc_poses(), thickness, gap, self._rng(10))
        size = a.axial_matrix
        grid = Grid((size, size), a.axial_fov / size, (a.shift[0], 16.0 + a.shift[1]))
        scanner = self._scanner(grid, rng)
        backgrounds: dict[DiscLevel, np.ndarray] = {}
        return [
            self._paint_axial(plan, thickness, grid, sig, scanner, rng, backgrounds)
            for plan in plans
        ]

    def _paint_axial(
        self,
        plan: AxialSeriesPlan,
        thickness: float,
        grid: Grid,
        sig: Signals,
        scanner: Scanner,
        rng: np.random.Generator,
        backgrounds: dict[DiscLevel, np.ndarray],
    ) -> Series:
        """Paint and acquire each planned plane; a level's background is painted once."""
        a = self.anatomy
        series = Series(plan.description, 0, self.t2, thickness, plan.gap)
        for plane in plan.planes:
            grades = self.patient.grades[plane.level]
            if plane.level not in backgrounds:
                background = Canvas(grid, rotation=a.rotation)
                paint_axial_background(background, sig, a, plane.level, grades, rng)
                backgrounds[plane.level] = background.image
            canvas = Canvas(grid, rotation=a.rotation)
            canvas.image = backgrounds[plane.level].copy()
            box = paint_axial_slice(
                canvas, sig, a, plane.level, grades, self.lesions[plane.level], plane.offset, rng
            )
            series.frames.append(
                Frame(
                    scanner.acquire(canvas),
                    _plane_position(plane.point, plane.row, plane.col, grid),
                    plane.row,
                    plane.col,
                    grid.spacing,
                    _lesion_pixels(box, grid, a.rotation),
                    plane.level,
                )
            )
        return series

    def axial_t2(self) -> Series:
        """25 axial T2 images: five per level, from L5-S1 upward, centre slice through the disc."""
        a = self.anatomy
        sig = Signals(self.t2)
        rng = self._rng(4)
        thickness = float(rng.uniform(3.0, 4.0))
        gap = thickness + float(rng.uniform(0.2, 0.8))
        size = a.axial_matrix
        grid = Grid((size, size), a.axial_fov / size, (a.shift[0], 16.0 + a.shift[1]))
        series = Series("T2 AX", 0, self.t2, thickness, gap)
        scanner = self._scanner(grid, rng)
        for level in reversed(LEVELS):
            seg = self.curve.discs[level]
            cos_t, sin_t = math.cos(seg.tilt), math.sin(seg.tilt)
            row: Vector = (1.0, 0.0, 0.0)
            col: Vector = (0.0, cos_t, -sin_t)  # the disc's posterior axis
            normal: Vector = (0.0, sin_t, cos_t)  # towards the head
            centre: Vector = (0.0, seg.u, -seg.v)
            background = Canvas(grid, rotation=a.rotation)
            grades = self.patient.grades[level]
            paint_axial_background(background, sig, a, level, grades, rng)
            for offset in range(-2, 3):
                canvas = Canvas(grid, rotation=a.rotation)
                canvas.image = background.image.copy()
                box = paint_axial_slice(
                    canvas, sig, a, level, grades, self.lesions[level], offset, rng
                )
                pixels = scanner.acquire(canvas)
                here = tuple(centre[i] + offset * gap * normal[i] for i in range(3))
                series.frames.append(
                    Frame(
                        pixels,
                        _plane_position(here, row, col, grid),
                        row,
                        col,
                        grid.spacing,
                        _lesion_pixels(box, grid, a.rotation),
                        level,
                    )
                )
        return series

    def sagittal(self, description: str, sequence: T.Sequence, n: int, stream: int) -> Series:
        """Sagittal slices from the patient's right to left; the middle one is the midline."""
        a = self.anatomy
        sig = Signals(sequence)
        rng = self._rng(stream)
        thickness = float(rng.uniform(3.5, 4.5))
        gap = thickness + float(rng.uniform(0.3, 1.0))
        grid = self._sagittal_grid()
        background = Canvas(grid)
        paint_sagittal_background(background, sig, a, rng)
        row: Vector = (0.0, 1.0, 0.0)
        col: Vector = (0.0, 0.0, -1.0)
        series = Series(description, 0, sequence, thickness, gap)
        scanner = self._scanner(grid, rng)
        for k in range(n):
            x = (k - (n - 1) / 2) * gap
            canvas = Canvas(grid)
            canvas.image = background.image.copy()
            paint_sagittal(canvas, sig, a, self.patient.grades, self.lesions, x, rng, self.thoracic)
            pixels = scanner.acquire(canvas)
            series.frames.append(
                Frame(
                    pixels, _plane_position((x, 0.0, 0.0), row, col, grid), row, col, grid.spacing
                )
            )
        return series

    @property
    def thoracic(self) -> bool:
        """Whether the sagittal field of view reaches above T12 (so T9-T11 are drawn)."""
        return self.protocol in (Protocol.THORACIC, Protocol.CUTSACRUM)

    def _sagittal_grid(self) -> Grid:
        """The sagittal field of view: the lumbar spine and sacrum (paper); up to T9 with the
        sacrum (`thoracic`); or moved up so that its lower edge cuts the sacrum (`cutsacrum`)."""
        a = self.anatomy
        size = a.sagittal_matrix
        if self.protocol is Protocol.THORACIC:
            fov = a.sagittal_fov * 1.3
            return Grid((size, size), fov / size, (12.0, 28.0 - 0.2 * fov))
        if self.protocol is Protocol.CUTSACRUM:
            below = float(self._rng(11).uniform(12.0, 22.0))  # lower edge under L5-S1, in S1
            bottom = self.curve.discs[DiscLevel.L5_S1].v + below
            return Grid((size, size), a.sagittal_fov / size, (12.0, bottom - a.sagittal_fov / 2))
        return Grid((size, size), a.sagittal_fov / size, (12.0, 28.0))

    def upper_disc_centres(self) -> dict[str, Vector]:
        """True centres of the discs drawn above L1-L2 (T12-L1 upward), by level name."""
        if not self.thoracic:
            return {}
        curve = _spine_curve(self.anatomy, self.lesions, thoracic=True)
        return {name: (0.0, seg.u, -seg.v) for name, seg in curve.upper_discs.items()}

    def myelo(self) -> Series:
        """Two or three thick-slab MR myelograms: coronal and oblique projections."""
        a = self.anatomy
        rng = self._rng(5)
        sequence = T.Sequence(te=float(rng.uniform(700, 1000)), tr=float(rng.uniform(5000, 8000)))
        sig = Signals(sequence)
        size = 384
        grid = Grid((size, size), 300 / size, (0.0, 30.0))
        series = Series("MYELO", 0, sequence, float(rng.uniform(40, 60)), None)
        angles = [0.0, 0.5, -0.5][: int(rng.integers(2, 4))]
        scanner = self._scanner(grid, rng, noise_scale=1.5)
        canal_y = BODY_HALF_AP * a.scale + 9.0 * a.scale
        for angle in angles:
            canvas = Canvas(grid)
            paint_myelogram(canvas, sig, a, self.patient.grades, self.lesions, rng, oblique=angle)
            pixels = scanner.acquire(canvas)
            row: Vector = (math.cos(angle), math.sin(angle), 0.0)
            col: Vector = (0.0, 0.0, -1.0)
            series.frames.append(
                Frame(
                    pixels,
                    _plane_position((0.0, canal_y, 0.0), row, col, grid),
                    row,
                    col,
                    grid.spacing,
                )
            )
        return series

    def survey(self) -> Series:
        """Three-plane localiser: low resolution, fast gradient echo, noisy."""
        a = self.anatomy
        rng = self._rng(1)
        sequence = T.Sequence(te=float(rng.uniform(3, 6)), tr=float(rng.uniform(150, 300)))
        sig = Signals(sequence)
        series = Series("SURVEY", 0, sequence, 10.0, None, localizer=True, flip_angle=30.0)
        size = 256
        # sagittal
        grid = Grid((size, size), 420 / size, (20.0, 20.0))
        canvas = Canvas(grid)
        paint_sagittal_background(canvas, sig, a, rng)
        paint_sagittal(canvas, sig, a, self.patient.grades, self.lesions, 0.0, rng)
        row, col = (0.0, 1.0, 0.0), (0.0, 0.0, -1.0)
        series.frames.append(
            Frame(
                self._scanner(grid, rng, 2.0).acquire(canvas),
                _plane_position((0.0, 0.0, 0.0), row, col, grid),
                row,
                col,
                grid.spacing,
            )
        )
        # coronal
        grid = Grid((size, size), 420 / size, (0.0, 20.0))
        canvas = Canvas(grid)
        paint_coronal_localiser(canvas, sig, a, self.lesions)
        row, col = (1.0, 0.0, 0.0), (0.0, 0.0, -1.0)
        series.frames.append(
            Frame(
                self._scanner(grid, rng, 2.0).acquire(canvas),
                _plane_position((0.0, 0.0, 0.0), row, col, grid),
                row,
                col,
                grid.spacing,
            )
        )
        # axial through L3-L4, untilted
        level = DiscLevel.L3_L4
        grid = Grid((size, size), 400 / size, (0.0, 0.0))
        canvas = Canvas(grid)
        grades = self.patient.grades[level]
        paint_axial_background(canvas, sig, a, level, grades, rng)
        paint_axial_slice(canvas, sig, a, level, grades, self.lesions[level], 0, rng)
        seg = self.curve.discs[level]
        row, col = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
        series.frames.append(
            Frame(
                self._scanner(grid, rng, 2.0).acquire(canvas),
                _plane_position((0.0, seg.u, -seg.v), row, col, grid),
                row,
                col,
                grid.spacing,
            )
        )
        return series
