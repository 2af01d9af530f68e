"""Where the project's real test data lives: `../shared/data` beside the checkout.

`LUMBAR_SHARED_DATA` overrides it (e.g. for a clone that sits elsewhere). In a user's clone the
folder is absent and the tests that need it skip with the reason shown.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(
    os.environ.get("LUMBAR_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)
REAL_MRI = SHARED_DATA / "lumbar-mri-unlabelled"
SPIDER = SHARED_DATA / "spider-sagittal"
