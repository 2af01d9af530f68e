"""Find and name every intervertebral disc on sagittal MRI (T9-T10 down to L5-S1).

A heat-map network on an ImageNet-initialised EfficientNet-Lite0 finds disc centres on one 2D
sagittal slice; the levels are counted up from L5-S1 (the disc above the sacrum), so fields of
view with thoracic levels are named right, and a disc that cannot be named is reported so.
Trained on the SPIDER set (van der Graaf et al., Sci Data 11:264 (2024), CC BY 4.0) and
phantom slices; the weights ship in the package (weights/MODEL_CARD.md).

    >>> from lumbar.localize import load_localizer
    >>> localizer = load_localizer()            # bundled weights, no network
    >>> discs = localizer.find([image], [(0.7, 0.7)])[0]   # doctest: +SKIP
"""

from lumbar.localize.decode import Decoding, Disc
from lumbar.localize.localizer import Localizer, bundled_weights, default_localizer, load_localizer
from lumbar.localize.study import (
    LocalizerDiscCentres,
    PatientDisc,
    StudyDiscs,
    localize_series,
    localize_study,
)

__all__ = [
    "Decoding",
    "Disc",
    "Localizer",
    "LocalizerDiscCentres",
    "PatientDisc",
    "StudyDiscs",
    "bundled_weights",
    "default_localizer",
    "load_localizer",
    "localize_series",
    "localize_study",
]
