"""`lumbar grader train`: cross-validate the recipe on SPIDER and fit the model on all of it.

Writes OUT/grader.safetensors (the model: `lumbar.grader.load_grader(OUT)`) and OUT/cv.json
(the out-of-fold figures with 95% patient-bootstrap intervals, the calibration error before and
after temperature scaling, the penalties chosen per fold). The bundled model is this command's
output on `../shared/data/spider-sagittal` with the default recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lumbar.data.spider import SPIDER_CREDIT, read_spider, spider_folds
from lumbar.files import write_json_atomic
from lumbar.grader.calibration import expected_calibration_error
from lumbar.grader.data import disc_rows, spider_features
from lumbar.grader.evaluate import binary_figures, bootstrap, pfirrmann_figures
from lumbar.grader.features import FeatureTrunk
from lumbar.grader.model import save_grader
from lumbar.grader.recipe import CVResult, Recipe, cross_validate, fit_final, fuse_views
from lumbar.grading import SAGITTAL_FINDINGS

__all__ = ["BUNDLED_RECIPE", "cv_figures", "train_grader"]

#: The bundled model's recipe (benchmarks/grader.py's ablation chose it).
BUNDLED_RECIPE = Recipe()


def cv_figures(cv: CVResult, rows: Any, resamples: int = 1000) -> dict[str, Any]:
    """Every target's out-of-fold figures with 95% intervals, per disc and slice and with the
    views of a disc fused, and the ECE before / after temperature scaling."""
    out: dict[str, Any] = {}
    for fused in (False, True):
        probs = fuse_views(cv.probabilities, rows) if fused else cv.probabilities
        raw = fuse_views(cv.uncalibrated, rows) if fused else cv.uncalibrated
        part: dict[str, Any] = {}
        for t in ("disc_abnormal", *SAGITTAL_FINDINGS):
            if t not in probs:
                continue
            y, p = rows.targets[t], probs[t]
            part[t] = bootstrap(lambda i, y=y, p=p: binary_figures(y[i], p[i]), rows.patient,
                                resamples=resamples)  # fmt: skip
            part[t]["ece_uncalibrated"] = expected_calibration_error(raw[t], y)
        if "pfirrmann" in probs:
            g, q = rows.targets["pfirrmann"], probs["pfirrmann"]
            part["pfirrmann"] = bootstrap(
                lambda i, g=g, q=q: pfirrmann_figures(g[i], q[i]), rows.patient,
                resamples=resamples,
            )  # fmt: skip
            part["pfirrmann"]["ece_uncalibrated"] = expected_calibration_error(
                raw["pfirrmann"], g - 1
            )
        out["views_fused" if fused else "per_slice"] = part
    return out


def train_grader(
    data: Path,
    out: Path,
    *,
    recipe: Recipe = BUNDLED_RECIPE,
    cache_dir: Path | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Cross-validate `recipe` on the SPIDER folder `data`, fit it on every disc, write
    OUT/grader.safetensors and OUT/cv.json; returns cv.json's content.

    Raises:
        UserError: `data` is not a spider-sagittal folder; the ImageNet weights are missing.
    """
    slices = read_spider(Path(data))
    rows = disc_rows(slices)
    folds = spider_folds(slices)
    trunk = FeatureTrunk()
    cache: dict[Any, np.ndarray] = {}

    def features(variant: Any) -> np.ndarray:
        if variant not in cache:
            say(f"features of {len(rows)} disc crops ({variant.key})")
            cache[variant] = spider_features(slices, variant, trunk, cache_dir)
        return cache[variant]

    say("5-fold patient-grouped cross-validation")
    cv = cross_validate(recipe, features, rows, folds)
    figures = cv_figures(cv, rows)
    head = fit_final(recipe, features, rows, cv)
    about = {
        "data": f"{len(slices)} slices, {len(rows)} boxed discs of "
        f"{len(set(rows.patient.tolist()))} patients (spider-sagittal)",
        "credit": SPIDER_CREDIT,
        "folds": "lumbar.data.spider.spider_folds (seed 0); fold k test, k+1 validation",
    }
    out = Path(out)
    save_grader(out / "grader.safetensors", head, recipe, about)
    report = {
        **about,
        "recipe": repr(recipe),
        "temperature": cv.temperature,
        "l2_per_fold": cv.l2,
        "l2_final": head.l2,
        "figures": figures,
    }
    write_json_atomic(out / "cv.json", report, default=str)
    return report
