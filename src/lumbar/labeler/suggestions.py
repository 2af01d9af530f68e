"""Model suggestions for the grading app: one predicted class and probability per disc.

The grading app (`lumbar.labeler`) shows the ingest folder's images per patient; when a model
is configured, each disc level can show the model's suggestion next to the radiologist's own
grade. A suggestion is advisory output of `Suggestions.for_patient` only: it is a separate
record (`"source": "model"`) that the grading API never reads, so it cannot be saved as a
grade by accident.

Predictions are made per patient on first request (the patient's axial images, cropped and
prepared exactly as in `lumbar predict`) and cached for the life of the object. The model is
anything with `probabilities(paths)`, `classes` and `model_info()`: in practice a
`lumbar.inference.predict.Predictor`, which the caller loads.

Example:
    >>> suggestions = Suggestions(Predictor.load(Path("runs/effnet-finetune")), catalog)
    >>> suggestions.for_patient("P0123456789ab")["L4-L5"]
    {'source': 'model', 'suggested': 'abnormal', 'probability': 0.93, ...}
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lumbar.errors import UserError
from lumbar.ingest.classify import SeriesClass
from lumbar.labeler.catalog import Catalog

__all__ = ["DiscModel", "Suggestions"]


class DiscModel(Protocol):
    """A trained disc classifier as the grading app needs it (`Predictor` is one)."""

    classes: list[str]

    def probabilities(self, paths: Sequence[Path]) -> np.ndarray:
        """Class probabilities (N, classes) of axial disc images."""
        ...

    def model_info(self) -> dict[str, Any]:
        """What to say about the model ("run", "target", ...; no paths)."""
        ...


class Suggestions:
    """Per-patient, per-level model suggestions over a labeler `Catalog` (thread-safe).

    Args:
        model: the classifier (a loaded `lumbar.inference.predict.Predictor`).
        catalog: the grading app's catalog (`lumbar.labeler.catalog.load_catalog`).
    """

    def __init__(self, model: DiscModel, catalog: Catalog) -> None:
        self.model = model
        self.catalog = catalog
        self._cache: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def for_patient(self, patient_id: str) -> dict[str, dict[str, Any]]:
        """{level: suggestion} for the patient's axial images ({} for an unknown patient)."""
        with self._lock:
            if patient_id in self._cache:
                return self._cache[patient_id]
        images = [
            im
            for im in self.catalog.patients.get(patient_id, [])
            if im.view == SeriesClass.AXIAL_T2 and im.level
        ]
        result: dict[str, dict[str, Any]] = {}
        if images:
            model = self.model
            probabilities = model.probabilities([im.path for im in images])
            info = model.model_info()
            for im, probs in zip(images, probabilities, strict=True):
                best = int(probs.argmax())
                result[str(im.level)] = {
                    "source": "model",
                    "model": info["run"],
                    "target": info["target"],
                    "suggested": model.classes[best],
                    "probability": round(float(probs[best]), 4),
                    "probabilities": {
                        c: round(float(p), 4) for c, p in zip(model.classes, probs, strict=True)
                    },
                }
        with self._lock:
            self._cache[patient_id] = result
        return result

    def check(self) -> None:
        """Try the model on the first patient now, not at the first page a rater opens.

        Raises:
            UserError: the model fails on the catalog's images (a wrong-shaped model,
                unreadable images).
        """
        first = next(iter(self.catalog.patients), None)
        if first is None:
            return
        try:
            self.for_patient(first)
        except Exception as err:
            reason = (str(err).splitlines() or [""])[0]
            raise UserError(
                f"the model fails on the images of {first}: {type(err).__name__}: {reason}",
                option="model",
            ) from err
