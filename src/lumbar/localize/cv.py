"""Patient-grouped 5-fold cross-validation of the localiser on the SPIDER set, and the final run.

Round k trains on every fold but k (fixed settings: no model selection on any fold) and keeps
the network's raw outputs on fold k's slices (RUN/fold-k/outputs.npz), so decoding and
calibration are fitted and measured on out-of-fold outputs without retraining.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lumbar.data.spider import read_spider, spider_folds
from lumbar.errors import UserError
from lumbar.files import write_json_atomic
from lumbar.localize.data import Sample, negative_samples, phantom_samples, spider_sample
from lumbar.localize.infer import network_outputs
from lumbar.localize.train import TrainSettings, save_weights, settings_dict, train_localizer
from lumbar.runs import CONFIG

WEIGHTS = "localizer.safetensors"
OUTPUTS = "outputs.npz"
FOLDS = 5


def training_samples(spider: list[Sample], settings: TrainSettings) -> list[Sample]:
    """SPIDER slices plus the run's phantom slices and negatives."""
    return (
        spider
        + phantom_samples(settings.phantoms, seed=7)
        + negative_samples(settings.negatives, seed=11)
    )


def save_outputs(path: Path, samples: list[Sample], outputs) -> None:
    """Raw network outputs and letterbox of each sample, keyed by sample name."""
    arrays = {}
    meta = {}
    for s, (out, box) in zip(samples, outputs, strict=True):
        arrays[s.name] = out.astype(np.float16)
        meta[s.name] = [box.scale, box.pad_x, box.pad_y]
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, __meta__=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)


def run_fold(
    run_dir: Path,
    fold: int | None,
    spider: list[Sample],
    folds: dict[str, int],
    settings: TrainSettings,
    log: Callable[[str], None] = print,
) -> Path:
    """Train round `fold` (None: the final model on every slice); keep weights and outputs."""
    name = "final" if fold is None else f"fold-{fold}"
    out = run_dir / name
    if (out / WEIGHTS).is_file() and (fold is None or (out / OUTPUTS).is_file()):
        log(f"{name}: done already")
        return out
    train = [s for s in spider if fold is None or folds[s.patient] != fold]
    test = [s for s in spider if fold is not None and folds[s.patient] == fold]
    log(f"{name}: training on {len(train)} SPIDER slices, testing on {len(test)}")
    start = time.perf_counter()
    model = train_localizer(training_samples(train, settings), settings, log=log)
    minutes = (time.perf_counter() - start) / 60
    save_weights(
        model,
        out / WEIGHTS,
        {"settings": settings_dict(settings), "fold": fold, "train_minutes": round(minutes, 1)},
    )
    if test:
        outputs = network_outputs(model, [s.image for s in test], settings.input_size)
        save_outputs(out / OUTPUTS, test, outputs)
    log(f"{name}: {minutes:.1f} min")
    return out


def cross_validate(
    data: Path,
    run_dir: Path,
    settings: TrainSettings,
    *,
    final: bool = True,
    log: Callable[[str], None] = print,
) -> None:
    """All five rounds (skipping finished ones), then the final model on every slice.

    Raises:
        UserError: `run_dir` was started with other settings (its finished rounds would be
            kept beside rounds trained with these), or the data is not a SPIDER folder.
    """
    run_dir = Path(run_dir)
    config = run_dir / CONFIG
    wanted = json.loads(json.dumps(settings_dict(settings)))
    if config.exists():
        try:
            started = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise UserError(f"{config} is not readable; use a new --out", option="out") from None
        if started != wanted:
            raise UserError(
                f"{run_dir} was started with other settings; use a new --out", option="out"
            )
    slices = read_spider(data)
    folds = spider_folds(slices)
    spider = [spider_sample(s) for s in slices]
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config, wanted)
    for fold in range(FOLDS):
        run_fold(run_dir, fold, spider, folds, settings, log)
    if final:
        run_fold(run_dir, None, spider, folds, settings, log)
