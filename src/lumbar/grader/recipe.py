"""The grader's recipe, its cross-validation, and the fit of the bundled model.

A `Recipe` says which frozen features the head sees (crop variants, backbone depths, the level)
and how it is fitted (standardisation, class balance, the penalty chosen on validation, flip
augmentation) and used (flip test-time augmentation, fusing the views of one disc).
`cross_validate` runs it over `lumbar.data.spider.spider_folds` (fold k tests, fold k+1
validates: the penalty is chosen there, then the head is refitted on training + validation
patients) and returns out-of-fold logits; `fit_final` fits the model on every patient with the
folds' penalties and temperatures fitted on those out-of-fold logits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lumbar.grader.calibration import fit_temperature
from lumbar.grader.data import CropVariant, DiscRows
from lumbar.grader.head import (
    TARGET_WIDTHS,
    MultiTaskHead,
    choose_l2,
    fit_head,
    logits_to_probabilities,
)

__all__ = ["CVResult", "Recipe", "cross_validate", "fit_final", "fuse_views", "tap_columns"]

#: Channels of EfficientNet-Lite0's tapped stages, in `lumbar.grader.features.DEFAULT_TAPS`
#: order (40, 112, 320, 1280).
TAP_WIDTHS: tuple[int, ...] = (40, 112, 320, 1280)

FeatureSource = Callable[[CropVariant], np.ndarray]


@dataclass(frozen=True)
class Recipe:
    """How the grader is fitted and applied (defaults: the bundled model's recipe).

    Attributes:
        variants: crop variants whose features are concatenated (several scales: multi-scale).
        taps: indices into the tapped depths used (3 alone: the trunk's output only).
        level: append the level's one-hot to the features.
        standardise, balance: see `lumbar.grader.head.fit_head`.
        l2: a fixed penalty, or None to choose each target's on the validation fold.
        flip_train: add each training crop's mirror image as a further training row.
        tta: average the logits of each crop and its mirror image at test time.
        fuse: average the probabilities of the views (T1, T2, ...) of one patient's disc.
        context: also give each disc its features minus the mean of the features of every
            disc on the same slice (what sets it apart from its neighbours, with the
            scanner's and the sequence's look taken out).
    """

    variants: tuple[CropVariant, ...] = (CropVariant(224, 1.0, grid=True),)
    taps: tuple[int, ...] = (0, 1, 2, 3)
    level: bool = True
    standardise: bool = True
    balance: bool = True
    l2: float | None = None
    flip_train: bool = True
    tta: bool = True
    fuse: bool = False
    context: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def with_(self, **changes: object) -> Recipe:
        """A copy with `changes`."""
        return replace(self, **changes)  # type: ignore[arg-type]


def tap_columns(taps: Sequence[int]) -> np.ndarray:
    """Column indices of the chosen tapped depths in a full feature row."""
    starts = np.cumsum((0, *TAP_WIDTHS))
    return np.concatenate([np.arange(starts[t], starts[t + 1]) for t in taps])


def select_columns(features: np.ndarray, taps: Sequence[int]) -> np.ndarray:
    """The chosen tapped depths' global means of full feature rows, and every grid-pooled
    column after them (features of a `grid` variant)."""
    columns = tap_columns(taps)
    return np.concatenate([features[:, columns], features[:, sum(TAP_WIDTHS) :]], axis=1)


def design(recipe: Recipe, features: FeatureSource, rows: DiscRows, flip: bool) -> np.ndarray:
    """The head's input for every row: chosen taps of each variant (mirrored if `flip`), then
    the level's one-hot."""
    parts = [
        select_columns(features(v.flipped() if flip else v), recipe.taps) for v in recipe.variants
    ]
    if recipe.context:
        parts += [slice_centred(p, rows.slice_index) for p in parts]
    if recipe.level:
        parts.append(rows.level_onehot())
    if not parts:
        raise ValueError("a recipe needs crop variants or the level")
    return np.concatenate(parts, axis=1)


def slice_centred(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row of `x` minus the mean of the rows of its group (its slice)."""
    _, inverse = np.unique(groups, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    sums = np.zeros((counts.size, x.shape[1]))
    np.add.at(sums, inverse, x)
    return (x - (sums / counts[:, None])[inverse]).astype(x.dtype)


@dataclass
class CVResult:
    """Out-of-fold logits of every row ({target: (N, width)}), calibrated probabilities (the
    temperature of each row's fold fitted on the other folds' out-of-fold logits), the penalty
    chosen in each fold and the temperatures fitted on all out-of-fold logits."""

    logits: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]
    uncalibrated: dict[str, np.ndarray]
    fold: np.ndarray
    l2: list[dict[str, float]]
    temperature: dict[str, float]
    heads: list[MultiTaskHead] = field(default_factory=list)
    fold_temperature: list[dict[str, float]] = field(default_factory=list)


def _subset(targets: Mapping[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {t: v[index] for t, v in targets.items()}


def _fit_rows(
    recipe: Recipe, x: np.ndarray, xf: np.ndarray, targets: Mapping[str, np.ndarray],
    index: np.ndarray, l2: Mapping[str, float] | float,
) -> MultiTaskHead:  # fmt: skip
    if recipe.flip_train:
        rows = np.concatenate([x[index], xf[index]])
        values = {t: np.concatenate([v[index], v[index]]) for t, v in targets.items()}
    else:
        rows, values = x[index], _subset(targets, index)
    return fit_head(rows, values, l2, balance=recipe.balance, standardise=recipe.standardise)


def _predict(recipe: Recipe, head: MultiTaskHead, x: np.ndarray, xf: np.ndarray) -> np.ndarray:
    raw = head.raw_logits(x)
    return (raw + head.raw_logits(xf)) / 2 if recipe.tta else raw


def fuse_views(probabilities: Mapping[str, np.ndarray], rows: DiscRows) -> dict[str, np.ndarray]:
    """Each row's probabilities replaced by the mean over the rows of the same patient and
    level (the T1, T2 and T2-SPACE views of one disc)."""
    keys = np.array([f"{p}\t{lv}" for p, lv in zip(rows.patient, rows.level, strict=True)])
    _, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    out = {}
    for t, p in probabilities.items():
        if p.ndim == 1:
            out[t] = (np.bincount(inverse, weights=p) / counts)[inverse]
        else:
            sums = np.stack([np.bincount(inverse, weights=p[:, c]) for c in range(p.shape[1])], 1)
            out[t] = (sums / counts[:, None])[inverse]
    return out


def _probabilities(logits: Mapping[str, np.ndarray], rows: DiscRows, fuse: bool) -> dict:
    probs = logits_to_probabilities(logits)
    return fuse_views(probs, rows) if fuse else probs


def _labels(target: str, values: np.ndarray) -> np.ndarray:
    return values - 1 if target == "pfirrmann" else values


def cross_validate(
    recipe: Recipe,
    features: FeatureSource,
    rows: DiscRows,
    folds: Mapping[str, int],
    *,
    n_folds: int = 5,
    targets: Sequence[str] | None = None,
) -> CVResult:
    """Out-of-fold predictions of `recipe` on `rows`; `folds` maps patient -> fold."""
    names = tuple(targets or rows.targets)
    values = {t: rows.targets[t] for t in names}
    x = design(recipe, features, rows, flip=False)
    xf = design(recipe, features, rows, flip=True)
    fold = np.array([folds[p] for p in rows.patient])
    raw = np.zeros((len(rows), sum(TARGET_WIDTHS[t] for t in names)))
    chosen: list[dict[str, float]] = []
    heads: list[MultiTaskHead] = []
    head = None
    for k in range(n_folds):
        test = np.flatnonzero(fold == k)
        val = np.flatnonzero(fold == (k + 1) % n_folds)
        train = np.flatnonzero((fold != k) & (fold != (k + 1) % n_folds))
        if recipe.l2 is None:
            xt = np.concatenate([x[train], xf[train]]) if recipe.flip_train else x[train]
            vt = (
                {t: np.concatenate([v[train], v[train]]) for t, v in values.items()}
                if recipe.flip_train
                else _subset(values, train)
            )
            l2: dict[str, float] = choose_l2(
                xt, vt, x[val], _subset(values, val), balance=recipe.balance,
                standardise=recipe.standardise,
            )  # fmt: skip
        else:
            l2 = dict.fromkeys(names, recipe.l2)
        chosen.append(l2)
        head = _fit_rows(recipe, x, xf, values, np.concatenate([train, val]), l2)
        heads.append(head)
        raw[test] = _predict(recipe, head, x[test], xf[test])
    assert head is not None
    logits = {t: raw[:, head.columns(t)] for t in names}
    temperature = {t: fit_temperature(logits[t], _labels(t, values[t])) for t in names}
    calibrated = {t: np.zeros_like(z) for t, z in logits.items()}
    fold_temperature: list[dict[str, float]] = []
    for k in range(n_folds):  # cross-fitted: fold k's temperature from the other folds
        inside, outside = fold == k, fold != k
        fold_temperature.append({})
        for t, z in logits.items():
            temp = fit_temperature(z[outside], _labels(t, values[t])[outside])
            calibrated[t][inside] = z[inside] / temp
            fold_temperature[k][t] = temp
            heads[k].temperature[t] = temp
    return CVResult(
        logits,
        _probabilities(calibrated, rows, recipe.fuse),
        _probabilities(logits, rows, recipe.fuse),
        fold,
        chosen,
        temperature,
        heads,
        fold_temperature,
    )


def fit_final(
    recipe: Recipe, features: FeatureSource, rows: DiscRows, cv: CVResult
) -> MultiTaskHead:
    """The model on every row: each target's penalty the geometric mean of the folds' choices
    (or the recipe's fixed one), temperatures from the out-of-fold logits of `cv`."""
    x = design(recipe, features, rows, flip=False)
    xf = design(recipe, features, rows, flip=True)
    names = tuple(cv.logits)
    l2 = {t: float(np.exp(np.mean([np.log(c[t]) for c in cv.l2]))) for t in names}
    head = _fit_rows(recipe, x, xf, {t: rows.targets[t] for t in names}, np.arange(len(rows)), l2)
    head.temperature = dict(cv.temperature)
    return head
