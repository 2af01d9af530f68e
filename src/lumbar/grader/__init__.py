"""Sagittal per-disc grading: crops sized from the disc spacing, frozen ImageNet features and a
calibrated multi-task linear head for SPIDER's targets (`lumbar.grading.SAGITTAL_TARGETS`).

Example:
    >>> from lumbar.grader import load_grader
    >>> grader = load_grader()                    # the bundled model, loaded once
    >>> results = grader.grade(image, [("L4-L5", 250.0, 310.0)], spacing_mm=(0.7, 0.7))
    >>> results[0].p_abnormal, results[0].pfirrmann_probabilities, results[0].findings
"""

from lumbar.grader.model import BUNDLED_MODEL, DiscResult, Grader, Member, load_grader

__all__ = ["BUNDLED_MODEL", "DiscResult", "Grader", "Member", "load_grader"]
