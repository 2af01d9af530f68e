"""Model suggestions for the grading app: one predicted class and probability per disc.

The grading app (`lumbar.labeler`) shows the ingest folder's images per patient; when a model
is configured, each disc level can show the model's suggestion next to the radiologist's own
grade. A suggestion is advisory output of `Suggestions.for_patient` only: it is a separate
record (`"source": "model"`) that the grading API never reads, so it cannot be saved as a
grade by accident.

Predictions are made per patient on first request (the patient's axial images, cropped and
prepared exactly as in `lumbar predict`) and cached for the life of the object.

Example:
    >>> suggestions = Suggestions(Predictor.load(Path("runs/effnet-finetune")), catalog)
    >>> suggestions.for_patient("P0123456789ab")["L4-L5"]
    {'source': 'model', 'suggested': 'abnormal', 'probability': 0.93, ...}
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from lumbar.explain import prepare_image
from lumbar.inference.predict import AXIAL_VIEW, Predictor

__all__ = ["Suggestions"]


class Suggestions:
    """Per-patient, per-level model suggestions over a labeler `Catalog` (thread-safe).

    Args:
        predictor: a loaded `lumbar.inference.predict.Predictor`.
        catalog: the grading app's catalog (`lumbar.labeler.catalog.load_catalog`).
    """

    def __init__(self, predictor: Predictor, catalog: Any) -> None:
        self.predictor = predictor
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
            if im.view == AXIAL_VIEW and im.level
        ]
        result: dict[str, dict[str, Any]] = {}
        if images:
            predictor = self.predictor
            batch = torch.cat(
                [
                    prepare_image(im.path, predictor.roi, predictor.model.preprocessing)[1]
                    for im in images
                ]
            )
            with predictor.lock, torch.no_grad():
                probabilities = torch.softmax(predictor.model.eval()(batch), dim=1).numpy()
            info = predictor.model_info()
            for im, probs in zip(images, probabilities, strict=True):
                best = int(probs.argmax())
                result[str(im.level)] = {
                    "source": "model",
                    "model": info["run"],
                    "target": info["target"],
                    "suggested": predictor.classes[best],
                    "probability": round(float(probs[best]), 4),
                    "probabilities": {
                        c: round(float(p), 4) for c, p in zip(predictor.classes, probs, strict=True)
                    },
                }
        with self._lock:
            self._cache[patient_id] = result
        return result
