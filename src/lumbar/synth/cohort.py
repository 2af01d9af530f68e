"""Who the phantom patients are: their disc grades (close to the paper's Table 5) and anatomy.

Grades are drawn per level from the paper's class frequencies, with a per-patient latent
"degeneration tendency" so that abnormal levels cluster in the same patients, as in real cohorts.
Stenosis grades depend on the disc state, with conditional tables tuned so that the cohort's
totals match the paper's counts (section 3.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lumbar.grading import LEVELS, DiscLevel, DiscState, Herniation

# Paper, Table 5: normal, degeneration, bulge, herniation counts per level (181 patients).
TABLE5_COUNTS: dict[DiscLevel, tuple[int, int, int, int]] = {
    DiscLevel.L1_L2: (163, 13, 5, 0),
    DiscLevel.L2_L3: (149, 12, 20, 0),
    DiscLevel.L3_L4: (113, 9, 59, 0),
    DiscLevel.L4_L5: (38, 6, 129, 8),
    DiscLevel.L5_S1: (82, 10, 85, 4),
}
# Herniation is rare in the paper (12 of 905); the phantom keeps a small floor of it at the
# upper levels too so every class can be drawn and learnt, without changing the totals much.
_HERNIATION_FLOOR = 0.004

# P(stenosis grade | disc state), rows = disc state 0..3. Chosen so that, with Table 5's disc
# states, the expected totals are the paper's: SCS 606/155/85/59, RFS 627/140/81/57,
# LFS 628/133/84/60 (of 905 discs).
_SCS_GIVEN_DISC = np.array(
    [
        [0.88, 0.08, 0.03, 0.01],
        [0.60, 0.25, 0.10, 0.05],
        [0.319, 0.324, 0.2015, 0.1555],
        [0.10, 0.20, 0.30, 0.40],
    ]
)
_FORAMINAL_GIVEN_DISC = np.array(
    [
        [0.90, 0.07, 0.02, 0.01],
        [0.65, 0.20, 0.10, 0.05],
        [0.345, 0.286, 0.211, 0.158],
        [0.15, 0.25, 0.30, 0.30],
    ]
)
# Herniation types among herniated discs: plain, migrated, sequestrated.
_HERNIATION_TYPES = (
    (Herniation.NORMAL, 0.5),
    (Herniation.MIGRATION, 0.3),
    (Herniation.SEQUESTRATION, 0.2),
)
_FAKE_GIVEN = ("AMAL", "OMAR", "SARA", "ALI", "NOOR", "HASSAN", "MARYAM", "YUSUF", "LAYLA", "ZAID")
_FAKE_FAMILY = ("ALANI", "KHALIL", "RASHID", "SALEH", "HAMDAN", "NASSER", "TAHA", "JABIR")


@dataclass(frozen=True)
class LevelGrades:
    """Table 3 grades of one disc level."""

    disc_state: int
    herniation: int
    scs: int
    rfs: int
    lfs: int


@dataclass(frozen=True)
class Identity:
    """Fake identifying data, so that de-identification downstream has real work to do."""

    patient_id: str
    name: str
    birth_date: str
    sex: str
    accession: str
    study_date: str
    study_time: str


@dataclass(frozen=True)
class Anatomy:
    """Per-patient variation of anatomy, contrast and acquisition."""

    scale: float  # overall body size
    fat_mm: float  # posterior subcutaneous fat thickness
    muscle_fat: float  # fatty infiltration of the paraspinal muscles, 0-1
    canal_scale: float  # constitutional canal size
    disc_height: float  # mm, at L1-L2 (lower discs are taller)
    lordosis: float  # mm of anterior sag of the lumbar curve at L3
    rotation: float  # rad, axial rotation (scoliosis, positioning)
    shift: tuple[float, float]  # mm, field-of-view centring error
    axial_matrix: int
    axial_fov: float
    sagittal_matrix: int
    sagittal_fov: float
    sagittal_frames: int
    te_t2: float
    tr_t2: float
    te_t1: float
    tr_t1: float
    noise: float  # noise sigma relative to the brightest tissue
    bias: float  # strength of the coil bias field
    texture: float
    disc_ageing: float  # desiccation of every disc of this patient (age), 0-0.35


@dataclass(frozen=True)
class Patient:
    """One phantom patient: identity, anatomy and the grades of each disc level."""

    index: int
    seed: int
    identity: Identity
    anatomy: Anatomy
    grades: dict[DiscLevel, LevelGrades] = field(default_factory=dict)


def _disc_state_probs(level: DiscLevel) -> np.ndarray:
    counts = np.asarray(TABLE5_COUNTS[level], dtype=float)
    probs = counts / counts.sum()
    probs[DiscState.HERNIATION] = max(probs[DiscState.HERNIATION], _HERNIATION_FLOOR)
    return probs / probs.sum()


def _ordinal_draw(probs: np.ndarray, latent: float) -> int:
    """Pick a class by thresholding a standard-normal latent at the cumulative probabilities.

    Classes are ordered normal < degeneration < bulge < herniation by severity, so a higher
    latent gives a more abnormal disc while each level keeps its marginal frequencies.
    """
    order = (DiscState.NORMAL, DiscState.DEGENERATION, DiscState.BULGE, DiscState.HERNIATION)
    cumulative = np.cumsum([probs[s] for s in order])
    u = 0.5 * (1.0 + math.erf(latent / math.sqrt(2.0)))  # standard normal CDF
    index = int(np.searchsorted(cumulative, u, side="right"))
    return int(order[min(index, len(order) - 1)])


def sample_grades(rng: np.random.Generator) -> dict[DiscLevel, LevelGrades]:
    """Draw the five levels' grades of one patient."""
    tendency = rng.normal()
    grades: dict[DiscLevel, LevelGrades] = {}
    for level in LEVELS:
        latent = 0.6 * tendency + 0.8 * rng.normal()  # unit variance: keeps the marginals
        state = _ordinal_draw(_disc_state_probs(level), latent)
        herniation = Herniation.NONE
        if state == DiscState.HERNIATION:
            kinds, weights = zip(*_HERNIATION_TYPES, strict=True)
            herniation = kinds[int(rng.choice(len(kinds), p=np.asarray(weights)))]
        scs = int(rng.choice(4, p=_SCS_GIVEN_DISC[state] / _SCS_GIVEN_DISC[state].sum()))
        side = _FORAMINAL_GIVEN_DISC[state] / _FORAMINAL_GIVEN_DISC[state].sum()
        rfs = int(rng.choice(4, p=side))
        lfs = int(rng.choice(4, p=side))
        grades[level] = LevelGrades(int(state), int(herniation), scs, rfs, lfs)
    return grades


def sample_identity(rng: np.random.Generator, index: int) -> Identity:
    """A fake but realistic-looking identity (name, hospital ID, birth date, accession)."""
    given = _FAKE_GIVEN[int(rng.integers(len(_FAKE_GIVEN)))]
    family = _FAKE_FAMILY[int(rng.integers(len(_FAKE_FAMILY)))]
    year = int(rng.integers(1950, 2001))
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    study_day = int(rng.integers(0, 365))
    study = np.datetime64("2020-01-01") + np.timedelta64(study_day, "D")
    return Identity(
        patient_id=f"FH{2020_000 + index * 7 + int(rng.integers(7)):07d}",
        name=f"{family}^{given}",
        birth_date=f"{year:04d}{month:02d}{day:02d}",
        sex=str(rng.choice(["F", "M"])),
        accession=f"ACC{int(rng.integers(10**7, 10**8))}",
        study_date=str(study).replace("-", ""),
        study_time=f"{int(rng.integers(8, 18)):02d}{int(rng.integers(60)):02d}00",
    )


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Per-patient anatomy, contrast and acquisition settings, as they vary between scanners."""
    return Anatomy(
        scale=float(rng.uniform(0.9, 1.1)),
        fat_mm=float(rng.uniform(6, 32)),
        muscle_fat=float(rng.beta(2, 5)),
        canal_scale=float(rng.uniform(0.88, 1.12)),
        disc_height=float(rng.uniform(7.5, 10.0)),
        lordosis=float(rng.uniform(6, 22)),
        rotation=float(rng.normal(0, 0.06)),
        shift=(float(rng.normal(0, 7)), float(rng.normal(0, 7))),
        axial_matrix=int(rng.choice([256, 320, 384, 448, 512])),
        axial_fov=float(rng.uniform(150, 200)),
        sagittal_matrix=int(rng.choice([320, 384, 448, 512])),
        sagittal_fov=float(rng.uniform(260, 320)),
        sagittal_frames=int(rng.choice([11, 12, 13, 15])),
        te_t2=float(rng.uniform(85, 125)),
        tr_t2=float(rng.uniform(2500, 4500)),
        te_t1=float(rng.uniform(8, 15)),
        tr_t1=float(rng.uniform(400, 700)),
        noise=float(rng.uniform(0.02, 0.06)),
        bias=float(rng.uniform(0.08, 0.3)),
        texture=float(rng.uniform(0.03, 0.08)),
        disc_ageing=float(rng.uniform(0.0, 0.35)),
    )


def make_patient(seed: int, index: int) -> Patient:
    """The `index`-th patient of the cohort with this `seed`; independent of the cohort size."""
    rng = np.random.default_rng([seed, index])
    return Patient(
        index=index,
        seed=seed,
        identity=sample_identity(rng, index),
        anatomy=sample_anatomy(rng),
        grades=sample_grades(rng),
    )
