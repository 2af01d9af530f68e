"""MR tissue properties and the spin-echo signal equation that turns them into image contrast.

Rendering anatomy once in tissue terms and converting with S = PD (1 - e^(-TR/T1)) e^(-TE/T2)
gives consistent T1, T2 and myelography contrast for the same patient without hand-tuned greys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tissue:
    """Proton density (relative) and relaxation times (ms) at 1.5 T, fast spin echo."""

    pd: float
    t1: float
    t2: float


@dataclass(frozen=True)
class Sequence:
    """Acquisition timing of a spin-echo sequence, in ms."""

    te: float
    tr: float

    def signal(self, tissue: Tissue) -> float:
        """Spin-echo signal of `tissue` under this sequence (arbitrary units, 0-1)."""
        return tissue.pd * (1.0 - math.exp(-self.tr / tissue.t1)) * math.exp(-self.te / tissue.t2)


# Values chosen to match the familiar look of lumbar FSE images (fat bright on T1 and T2,
# CSF bright on T2 only, healthy nucleus bright on T2, annulus and ligaments dark).
CSF = Tissue(pd=1.00, t1=4000, t2=1800)
FAT = Tissue(pd=0.95, t1=280, t2=140)
MUSCLE = Tissue(pd=0.75, t1=900, t2=45)
MARROW = Tissue(pd=0.85, t1=550, t2=85)
CORTEX = Tissue(pd=0.06, t1=1000, t2=10)
NUCLEUS = Tissue(pd=0.90, t1=1150, t2=130)
ANNULUS = Tissue(pd=0.65, t1=900, t2=38)
NERVE = Tissue(pd=0.75, t1=850, t2=75)
LIGAMENT = Tissue(pd=0.35, t1=700, t2=30)
FLOW_VOID = Tissue(pd=0.05, t1=1200, t2=50)
BOWEL = Tissue(pd=0.80, t1=1100, t2=90)
KIDNEY = Tissue(pd=0.85, t1=1000, t2=110)
SKIN = Tissue(pd=0.70, t1=700, t2=50)
CARTILAGE = Tissue(pd=0.85, t1=1000, t2=200)


def degenerate_nucleus(amount: float) -> Tissue:
    """Nucleus losing water: amount 0 is healthy, 1 is a black disc on T2."""
    amount = min(max(amount, 0.0), 1.0)
    return Tissue(
        pd=NUCLEUS.pd - 0.25 * amount,
        t1=NUCLEUS.t1 - 300 * amount,
        t2=NUCLEUS.t2 - 95 * amount,
    )
