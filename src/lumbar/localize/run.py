"""A localiser run folder: `lumbar localize train` writes it, `lumbar localize cv` measures it.

RUN/config.json               training settings
RUN/fold-k/localizer.safetensors, RUN/fold-k/outputs.npz
                              round k of the 5-fold CV: weights, raw outputs on fold k
RUN/final/localizer.safetensors   trained on every slice
RUN/localizer.safetensors     the final weights with the decoding fitted on all
                              out-of-fold outputs: what `--model RUN` loads, and what is
                              bundled in the package
RUN/cv.csv, RUN/oof.csv       figures and out-of-fold discs (`lumbar localize cv`)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lumbar.data.spider import SPIDER_CREDIT, read_spider, spider_folds
from lumbar.errors import UserError
from lumbar.files import write_csv_atomic
from lumbar.localize.calibrate import fit_decoding
from lumbar.localize.cv import FOLDS, OUTPUTS, WEIGHTS, cross_validate
from lumbar.localize.data import Sample, spider_sample
from lumbar.localize.decode import Decoding, Peak, find_peaks, image_context, name_discs
from lumbar.localize.evaluate import DiscResult, score_slice, summarise
from lumbar.localize.localizer import DECODING_FILE, write_decoding
from lumbar.localize.preprocess import Letterbox
from lumbar.localize.train import TrainSettings

OOF_COLUMNS = ("image", "level", "x", "y", "confidence", "fold")
CV_COLUMNS = (
    "sequence",
    "figure",
    "value",
    "low",
    "high",
    "discs",
    "slices",
    "patients",
)


def _read_outputs(path: Path) -> dict[str, tuple[np.ndarray, Letterbox]]:
    with np.load(path) as data:
        meta = json.loads(str(data["__meta__"]))
        return {name: (data[name].astype(np.float32), Letterbox(*meta[name])) for name in meta}


def oof_peaks(run_dir: Path, samples: list[Sample], folds: dict[str, int]) -> list[list[Peak]]:
    """Every sample's heat-map peaks from the round that held its patient out."""
    outputs: dict[str, tuple[np.ndarray, Letterbox]] = {}
    for k in range(FOLDS):
        path = run_dir / f"fold-{k}" / OUTPUTS
        if not path.is_file():
            raise UserError(f"{run_dir.name} has no finished CV round {k} ({path.name})")
        outputs.update(_read_outputs(path))
    missing = [s.name for s in samples if s.name not in outputs]
    if missing:
        raise UserError(f"{run_dir.name}: no out-of-fold outputs for {missing[0]}")
    return [find_peaks(*outputs[s.name]) for s in samples]


def _finalise(run_dir: Path, decoding: Decoding, settings: TrainSettings, final: bool) -> Path:
    """RUN/localizer.safetensors: the final weights (or, without a final model, CV round 0's),
    and RUN/decoding.json: the decoding fitted on all out-of-fold outputs."""
    from safetensors.torch import load_file, save_file

    from lumbar.files import atomic_path

    state = load_file(str(run_dir / ("final" if final else "fold-0") / WEIGHTS))
    data = (
        "SPIDER sagittal set (all 134 slices, 84 patients)"
        if final
        else "SPIDER sagittal set, CV round 0: folds 1-4 (102 slices, 64 patients)"
    )
    meta = {
        "settings": asdict(settings),
        "weights": "final" if final else "fold-0",
        "data": f"{data} + phantom sagittal slices + images without a spine",
        "credit": SPIDER_CREDIT,
    }
    target = run_dir / WEIGHTS
    with atomic_path(target) as tmp:
        save_file(state, str(tmp), metadata={"lumbar": json.dumps(meta)})
    write_decoding(decoding, run_dir / DECODING_FILE)
    return target


def train_run(
    data: Path,
    run_dir: Path,
    settings: TrainSettings,
    log: Callable[[str], None] = print,
    *,
    final: bool = True,
) -> Path:
    """Five CV rounds, the final model, the decoding fitted on out-of-fold outputs.

    Without `final` no model is trained on every slice: RUN/localizer.safetensors then holds
    CV round 0's weights (trained on folds 1-4), which saves a sixth training.
    """
    cross_validate(data, run_dir, settings, final=final, log=log)
    slices = read_spider(data)
    folds = spider_folds(slices)
    samples = [spider_sample(s) for s in slices]
    decoding = fit_decoding(samples, oof_peaks(run_dir, samples, folds))
    log(f"decoding fitted out of fold: detect {decoding.detect}, anchor {decoding.anchor}")
    return _finalise(run_dir, decoding, settings, final)


def evaluate_run(
    data: Path, run_dir: Path, resamples: int = 2000
) -> tuple[
    dict[str, dict[str, float]], list[dict[str, object]], list[DiscResult], dict[int, Decoding]
]:
    """Out-of-fold figures of a run: per fold, the decoding is fitted on the other folds'
    outputs (nested: no figure sees a threshold chosen on its own slices).

    Returns:
        (figures per sequence, out-of-fold disc rows for oof.csv, per-true-disc results,
        the decoding used on each fold)
    """
    slices = read_spider(data)
    folds = spider_folds(slices)
    samples = [spider_sample(s) for s in slices]
    peaks = oof_peaks(run_dir, samples, folds)
    fold_of = [folds[s.patient] for s in samples]
    rows: list[dict[str, object]] = []
    results: list[DiscResult] = []
    decodings: dict[int, Decoding] = {}
    for k in range(FOLDS):
        train = [i for i, f in enumerate(fold_of) if f != k]
        decoding = fit_decoding([samples[i] for i in train], [peaks[i] for i in train])
        decodings[k] = decoding
        for i, f in enumerate(fold_of):
            if f != k:
                continue
            context = image_context(samples[i].image.shape, samples[i].spacing_mm)
            discs = name_discs(peaks[i], decoding, *context)
            results += score_slice(samples[i], discs)
            rows += [
                {
                    "image": samples[i].name,
                    "level": d.level or "",
                    "x": round(d.x, 2),
                    "y": round(d.y, 2),
                    "confidence": round(d.confidence, 4),
                    "fold": k,
                }
                for d in discs
            ]
    return summarise(results, resamples), rows, results, decodings


def figure_rows(figures: dict[str, dict[str, float]]) -> list[dict[str, object]]:
    """cv.csv rows: one per sequence and figure, with its 95% interval."""
    rows = []
    for sequence, f in figures.items():
        for name in ("found_named", "median_error_mm", "slices_all_right"):
            rows.append(
                {
                    "sequence": sequence,
                    "figure": name,
                    "value": round(f[name], 4),
                    "low": round(f[name + "_low"], 4),
                    "high": round(f[name + "_high"], 4),
                    "discs": int(f["discs"]),
                    "slices": int(f["slices"]),
                    "patients": int(f["patients"]),
                }
            )
    return rows


def write_evaluation(run_dir: Path, figures, oof_rows) -> None:
    """RUN/cv.csv and RUN/oof.csv."""
    write_csv_atomic(run_dir / "cv.csv", figure_rows(figures), CV_COLUMNS)
    write_csv_atomic(run_dir / "oof.csv", oof_rows, OOF_COLUMNS)
