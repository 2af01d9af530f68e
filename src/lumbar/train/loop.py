"""`lumbar train`: the paper's transfer learning (Procedure 1), frozen or fine-tuned, made fast.

A run trains the paper's classifier (`lumbar.models.build_classifier`) on one target of a
manifest and writes a run folder (`lumbar.runs`): config.json (the resolved configuration, with
the model's keys for `load_classifier` and "train"), checkpoint.pt (the weights with the lowest
validation loss), last.pt (for resuming), history.csv (losses, accuracies, validation F1 and
seconds per epoch), learning-curve.png and metrics.json (validation and test metrics of the
kept weights).

Speed: never compute the same thing twice. The frozen leading stages of the trunk are a fixed
function of their input (they run in inference mode, see `lumbar.models.heads`), so their
output is computed once per image and augmentation variant and kept in memory; every epoch then
runs only the trainable tail (the head alone in frozen mode, e.g. VGG16's block5 + head when
fine-tuning its last block).

Augmentation with the cache: the paper draws a fresh brightness factor and flips per image and
epoch. The cached loop keeps a bank of `aug_variants` (default 4) augmented copies per image,
variant v drawn exactly as the naive loop draws epoch v (`lumbar.data.augment`), and epoch e
uses variant e mod V. With V >= epochs the cached loop is the naive loop exactly (a test checks
this); with V = 4 over 50 epochs each image is seen in 4 augmented forms instead of 50, which
`benchmarks/train.py` shows costs no accuracy on the phantom data. Validation and test images
are not augmented: one variant, computed once.

Reproducibility: shuffling, augmentation, head initialisation and dropout all derive from the
seed; on CPU the same seed and thread count give identical runs, and a resumed run restores
the RNG state so an interrupted run ends as an uninterrupted one would.

Distributed: under `torchrun` (env RANK/WORLD_SIZE) each process computes the cache for its
share of the images, the shares are combined, and every global batch is split across the
processes; the tail is wrapped in `DistributedDataParallel` (gloo on CPU, nccl on GPUs). The
loss is normalised by the whole global batch, so gradients equal those of one process.

`train` runs named steps: `start_run` and `resume_training` (`lumbar.train.steps`, shared with
the pretraining loops), `check_manifest`, `build_model`, `make_datasets`, `describe_run`,
`fill_caches`, then per epoch `train_epoch`, `validate`, `BestEpoch.update` and `save_epoch`,
and at the end `finish_run`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lumbar import runs
from lumbar.data.augment import Augmentation, parse_augmentation
from lumbar.data.dataset import ManifestDataset
from lumbar.data.manifest import Manifest, read_manifest
from lumbar.data.sampler import EpochBatchSampler
from lumbar.data.splits import check_target_classes
from lumbar.data.targets import Target, get_target
from lumbar.errors import UserError
from lumbar.metrics import classification_metrics
from lumbar.models import (
    Classifier,
    build_classifier,
    freeze_backbone,
    freeze_norm_statistics,
    resolve_weights_at,
    save_checkpoint,
    trainable_parameters,
    unfreeze_last,
)
from lumbar.models.preprocessing import Preprocessing
from lumbar.models.weights import read_weights_file
from lumbar.progress import TrainingBars
from lumbar.train.config import WEIGHT_DECAYS, TrainConfig
from lumbar.train.evaluate import evaluate_run
from lumbar.train.prefix import (
    MemoryPrefixCache,
    PrefixCache,
    batches,
    compute_prefix,
    extend_prefix,
    layout,
)
from lumbar.train.runtime import (
    CPU,
    Dist,
    all_reduce,
    autocast,
    barrier,
    pick_device,
    process_group,
    wrap_ddp,
)
from lumbar.train.steps import (
    BestEpoch,
    inverse_frequency_weights,
    resume_training,
    save_epoch,
    start_run,
    weighted_step,
)
from lumbar.visualize.charts import learning_curve

__all__ = [
    "HISTORY_FIELDS",
    "TrainResult",
    "build_model",
    "check_manifest",
    "choose_weight_decay",
    "describe_run",
    "fill_caches",
    "finish_run",
    "make_datasets",
    "make_optimizer",
    "set_feature_statistics",
    "train",
    "train_epoch",
    "validate",
]

HISTORY_FIELDS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_f1",
    "lr",
    "seconds",
)


@dataclass
class TrainResult:
    """What `train` returns: the run folder, the epoch history and the best epoch."""

    run_dir: Path
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    metrics: dict[str, Any]
    seconds: float


def train(
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    prefix_cache: PrefixCache | None = None,
) -> TrainResult:
    """Train a classifier as `config` says and write the run folder `run_dir`.

    Args:
        config: the run's settings (unresolved defaults are filled in).
        run_dir: the run folder; must be empty or absent unless `resume`.
        resume: continue the run in `run_dir` from its last.pt (its config.json wins; a
            larger `config.epochs` extends the run).
        progress: show a progress bar (on the main process).
        log: called with one-line notes (warnings, the kept epoch).
        prefix_cache: where to get the frozen-prefix cache (shared between runs of an
            experiment); None computes it in memory. Either way the run is the same.

    Returns:
        A `TrainResult`.

    Raises:
        UserError: bad configuration or data (one line, saying what to do).
    """
    started = time.perf_counter()
    say = log or (lambda message: None)
    run_dir = Path(run_dir)
    with process_group() as dist:
        cfg, state = start_run(
            run_dir, config, resume, command="lumbar train", saved_settings=_saved_settings
        )
        assert cfg.epochs is not None and cfg.lr is not None
        search: dict[str, float] = {}
        if cfg.weight_decay is None:  # --recipe regularized: chosen on the validation split
            if prefix_cache is None:
                prefix_cache = MemoryPrefixCache()
            cfg.weight_decay, search = choose_weight_decay(cfg, run_dir, prefix_cache, say)
        target = get_target(cfg.target)
        manifest = read_manifest(Path(cfg.manifest))
        for warning in check_manifest(manifest, target):
            say(f"warning: {warning}")
        device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, device)
        augmentation = parse_augmentation(str(cfg.augmentation))
        train_set, val_set = make_datasets(manifest, model.preprocessing, cfg, augmentation)
        counts = train_set.class_counts()
        weights = (
            inverse_frequency_weights(counts)
            if cfg.class_weights
            else torch.ones(target.num_classes)
        )
        stop = model.num_frozen_stages() if cfg.cache_features else 0
        # whole trunk frozen: cache after the head's pooling too (49x smaller for a 7x7 map)
        pool = model.head.pool if stop == len(model.stages()) else None
        variants = 1 if augmentation is None else min(cfg.aug_variants, cfg.epochs)
        if dist.main:
            described = describe_run(cfg, model, target, train_set, val_set, weights, stop, dist)
            if search:
                described["weight_decay_search"] = search
            runs.write_config(run_dir, described)

        optimizer = make_optimizer(cfg, model)
        first_epoch, history, best = resume_training(state, model, optimizer, run_dir)
        bar = TrainingBars(progress and dist.main)
        try:
            step = _Step(cfg, model, stop, optimizer, weights, train_set, val_set, dist, device)
            if cfg.cache_features:
                step.train_cache, step.val_cache = fill_caches(
                    step, bar, variants=variants, pool=pool, prefix_cache=prefix_cache
                )
            if cfg.standardize:
                set_feature_statistics(step, pool)
            epoch_task = bar.task("training", cfg.epochs)
            bar.advance(epoch_task, first_epoch)
            for epoch in range(first_epoch, cfg.epochs):
                t0 = time.perf_counter()
                train_loss, train_accuracy = train_epoch(step, epoch, epoch % variants, bar)
                val_loss, val_metrics = validate(step)
                row = {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "train_accuracy": train_accuracy,
                    "val_loss": val_loss,
                    "val_accuracy": val_metrics["accuracy"],
                    "val_f1": val_metrics["f1"],
                    "lr": cfg.lr,
                    "seconds": time.perf_counter() - t0,
                }
                history.append(row)
                improved = best.update(epoch + 1, val_loss)
                if dist.main and improved:
                    save_checkpoint(run_dir, model, epoch=epoch + 1, val_loss=val_loss)
                save_epoch(
                    run_dir, dist, model, optimizer, epoch + 1, history, HISTORY_FIELDS,
                    **best.state(),
                )  # fmt: skip
                bar.advance(
                    epoch_task,
                    1,
                    info=f"loss {train_loss:.4f} val_loss {val_loss:.4f} "
                    f"val_acc {val_metrics['accuracy']:.3f} val_f1 {val_metrics['f1']:.3f}",
                )
                if cfg.early_stop and best.stale >= cfg.early_stop:
                    say(f"early stop: no lower validation loss for {best.stale} epochs")
                    break
        finally:
            bar.close()

        metrics: dict[str, Any] = {}
        if dist.main:
            metrics = finish_run(run_dir, history, best, started, say)
        barrier(dist)
    return TrainResult(
        run_dir, history, best.epoch, best.loss, metrics, time.perf_counter() - started
    )


def _saved_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """The settings a resumed run keeps: its config.json's "train"."""
    return dict(saved["train"])


# --------------------------------------------------------------------------- data and model


def check_manifest(manifest: Manifest, target: Target) -> list[str]:
    """Fail early, in one line, on a manifest that cannot train `target`; return warnings."""
    if not manifest.has_column(target.column):
        raise UserError(
            f"{manifest.path.name} has no {target.column} column, which target {target.name} "
            f"needs; columns: {', '.join(manifest.columns)}"
        )
    if not manifest.has_column("split"):
        raise UserError(
            f"{manifest.path.name} has no split column; run `lumbar dataset split` first"
        )
    warnings = check_target_classes(manifest, target)
    labels = target.encode(manifest.grades(target.column))
    splits = manifest.column("split")
    for split in ("train", "val"):
        if not any(lab >= 0 and s == split for lab, s in zip(labels, splits, strict=True)):
            raise UserError(
                f"{manifest.path.name}: the {split} split has no image labelled for "
                f"{target.name}; re-split with `lumbar dataset split --target {target.name}`"
            )
    return warnings


def make_datasets(
    manifest: Manifest,
    preprocessing: Preprocessing,
    cfg: TrainConfig,
    augmentation: Augmentation | None,
) -> tuple[ManifestDataset, ManifestDataset]:
    """The training split (augmented as `augmentation` draws) and the validation split."""
    train_set = ManifestDataset(
        manifest, preprocessing, target=cfg.target, split="train", roi=cfg.roi,
        augmentation=augmentation, seed=cfg.seed, decode_threads=2,
    )  # fmt: skip
    val_set = ManifestDataset(
        manifest, preprocessing, target=cfg.target, split="val", roi=cfg.roi, seed=cfg.seed,
        decode_threads=2,
    )  # fmt: skip
    return train_set, val_set


def build_model(cfg: TrainConfig, device: torch.device) -> Classifier:
    """The run's classifier on `device`: its weights, the trained head of a train run it
    starts from, its frozen and trainable parts, in channels-last layout when asked."""
    model = _model_for(cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.to(device)


def _model_for(cfg: TrainConfig) -> Classifier:
    source = resolve_weights_at(cfg.backbone, cfg.weights, cfg.input_size)
    kwargs: dict[str, Any] = {}
    if cfg.bn_momentum is not None:
        kwargs["bn_momentum"] = cfg.bn_momentum
    model = build_classifier(
        cfg.backbone,
        get_target(cfg.target).num_classes,
        source,
        head=cfg.head,  # type: ignore[arg-type]
        hidden=int(cfg.hidden or 0),
        dropout=float(cfg.dropout or 0.0),
        standardize=bool(cfg.standardize),
        **kwargs,
    )
    if source.kind == "run":
        _load_trained_head(model, source.path)
    if cfg.mode == "frozen":
        freeze_backbone(model)
    else:
        unfreeze_last(model, cfg.unfreeze, unit=cfg.unfreeze_unit)
        freeze_norm_statistics(model, cfg.bn_stats == "frozen")
    return model


def _load_trained_head(model: Classifier, run_dir: Path | None) -> bool:
    """Start from a train run's head too when it fits (Keras' two-stage fine-tuning).

    `--weights RUN` loads the run's trunk (`lumbar.models`); a run of `lumbar train` with the
    same head shape also gives its trained classifier, so fine-tuning at the paper's small
    learning rate starts from the frozen run's result instead of a random head.
    """

    if run_dir is None or not (Path(run_dir) / runs.CHECKPOINT).is_file():
        return False
    state = read_weights_file(Path(run_dir) / runs.CHECKPOINT)
    head = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
    own = model.head.state_dict()
    if set(head) != set(own) or any(head[k].shape != own[k].shape for k in own):
        return False
    model.head.load_state_dict(head)
    return True


def describe_run(
    cfg: TrainConfig,
    model: Classifier,
    target: Target,
    train_set: ManifestDataset,
    val_set: ManifestDataset,
    weights: torch.Tensor,
    stop: int,
    dist: Dist,
) -> dict[str, Any]:
    """The run's config.json: the model's keys (`load_classifier`), the target, the resolved
    settings under "train", and what the data and the cache came to."""
    manifest = str(Path(cfg.manifest).resolve())
    return {
        **model.config(),
        "target": target.name,
        "class_names": list(target.class_names),
        "roi": cfg.roi,
        "manifest": manifest,
        "train": {**asdict(cfg), "manifest": manifest},
        "data": {
            "train_images": len(train_set),
            "val_images": len(val_set),
            "class_counts": train_set.class_counts().tolist(),
            "class_weights": [round(float(w), 6) for w in weights],
        },
        "trainable_parameters": sum(p.numel() for p in trainable_parameters(model)),
        "cached_stages": stop,
        "world_size": dist.world,
    }


def make_optimizer(cfg: TrainConfig, model: Classifier) -> torch.optim.Optimizer:
    """Adam on the trainable parameters, with the run's weight decay (L2) when it is not 0
    (the paper's runs: Adam exactly as before `--recipe` existed)."""
    if cfg.weight_decay:
        return torch.optim.Adam(
            trainable_parameters(model), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(trainable_parameters(model), lr=cfg.lr)


def choose_weight_decay(
    cfg: TrainConfig, run_dir: Path, prefix_cache: PrefixCache, say: Callable[[str], None]
) -> tuple[float, dict[str, float]]:
    """The weight decay of `WEIGHT_DECAYS` whose run has the lowest validation loss.

    Each candidate is a whole run of `cfg` (same seed) in a scratch folder beside `run_dir`,
    sharing the frozen-prefix cache, so the search costs the head's epochs only.

    Returns:
        The chosen weight decay and {candidate: its best validation loss}.
    """
    losses: dict[str, float] = {}
    Path(run_dir).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wd-", dir=Path(run_dir).parent) as scratch:
        for decay in WEIGHT_DECAYS:
            candidate = dataclasses.replace(cfg, weight_decay=decay)
            result = train(
                candidate, Path(scratch) / f"{decay:g}", progress=False,
                prefix_cache=prefix_cache,
            )  # fmt: skip
            losses[f"{decay:g}"] = result.best_val_loss
    best = min(WEIGHT_DECAYS, key=lambda d: losses[f"{d:g}"])
    say(f"weight decay {best:g} (validation loss {losses[f'{best:g}']:.4f} of {len(losses)})")
    return best, losses


@torch.no_grad()
def set_feature_statistics(step: _Step, pool: nn.Module | None) -> None:
    """Set the head's standardisation to the mean and standard deviation of the training
    split's pooled features (every cached augmentation variant; the un-augmented images when
    the trunk is not wholly cached)."""
    model = step.model
    if step.train_cache is not None and pool is not None:
        features = step.train_cache.flatten(0, 1)
    else:
        features = compute_prefix(
            model, step.train_set, len(model.stages()), variants=1,
            batch_size=step.cfg.eval_batch_size, channels_last=step.cfg.channels_last,
            precision=step.cfg.precision, pool=model.head.pool, device=step.device,
        )[0]  # fmt: skip
    flat = model.head.flatten(model.head.pool(features.float())).double()
    mean = flat.mean(dim=0)
    scale = flat.std(dim=0).clamp_min(1e-6)
    model.head.feature_mean.copy_(mean.float())
    model.head.feature_scale.copy_(scale.float())


# --------------------------------------------------------------------------- the epochs


class _Tail(nn.Module):
    """The trainable part of a Classifier: stages `start`.. plus the head (DDP wraps this)."""

    def __init__(self, model: Classifier, start: int) -> None:
        super().__init__()
        self.model = model
        self.start = start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_tail(x, self.start)


class _Step:
    """What the epochs of one run share: the model's trainable tail (DDP-wrapped under
    torchrun), its optimiser, the class weights, the two splits and their caches."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: Classifier,
        stop: int,
        optimizer: torch.optim.Optimizer,
        weights: torch.Tensor,
        train_set: ManifestDataset,
        val_set: ManifestDataset,
        dist: Dist,
        device: torch.device,
    ) -> None:
        self.cfg, self.model, self.stop, self.optimizer = cfg, model, stop, optimizer
        self.weights, self.device_weights = weights, weights.to(device)
        self.train_set, self.val_set = train_set, val_set
        self.train_labels = torch.from_numpy(train_set.labels)
        self.val_labels = torch.from_numpy(val_set.labels)
        self.dist, self.device = dist, device
        self.tail_module = _Tail(model, stop)
        self.tail = wrap_ddp(self.tail_module, dist, device)
        self.train_cache: torch.Tensor | None = None
        self.val_cache: torch.Tensor | None = None


def fill_caches(
    step: _Step,
    bar: TrainingBars,
    *,
    variants: int,
    pool: nn.Module | None,
    prefix_cache: PrefixCache | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen prefix of every training image (`variants` augmented copies) and of every
    validation image: computed here, or fetched from (and stored in) `prefix_cache`."""
    cfg, model, dist, device = step.cfg, step.model, step.dist, step.device
    task = bar.task("caching frozen layers", variants * len(step.train_set) + len(step.val_set))

    def tick(n: int) -> None:
        bar.advance(task, n)

    def fill(dataset: ManifestDataset, n: int) -> torch.Tensor:
        def compute(upto: int, with_pool: nn.Module | None) -> torch.Tensor:
            return compute_prefix(
                model, dataset, upto, variants=n, batch_size=cfg.eval_batch_size,
                channels_last=cfg.channels_last, precision=cfg.precision,
                dist_info=dist, progress=tick, pool=with_pool, device=device,
            )  # fmt: skip

        if prefix_cache is None or dist.active:
            return compute(step.stop, pool)

        def extend(
            base: torch.Tensor, start: int, upto: int, with_pool: nn.Module | None
        ) -> torch.Tensor:
            return extend_prefix(
                model, base, start, upto, batch_size=cfg.eval_batch_size,
                channels_last=cfg.channels_last, precision=cfg.precision,
                pool=with_pool, device=device,
            )  # fmt: skip

        settings = {
            "precision": cfg.precision,
            "channels_last": cfg.channels_last,
            "batch_size": cfg.eval_batch_size,
            "device": device.type,
        }
        return prefix_cache.fetch(
            model, dataset, stop=step.stop, pool=pool, variants=n, settings=settings,
            compute=compute, extend=extend,
        )  # fmt: skip

    train_cache = fill(step.train_set, variants)
    val_cache = fill(step.val_set, 1)[0]
    bar.hide(task)
    return train_cache, val_cache


def train_epoch(step: _Step, epoch: int, variant: int, bar: TrainingBars) -> tuple[float, float]:
    """One epoch over the training split in the seeded order of `epoch`, from augmentation
    `variant` of the cache (or the images themselves): the weighted loss and the accuracy."""
    cfg, dist, device = step.cfg, step.dist, step.device
    step.model.train()
    n_train = len(step.train_set)
    sampler = EpochBatchSampler(
        n_train, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch,
        rank=dist.rank, world=dist.world,
    )  # fmt: skip
    loss_sum = correct = seen = 0.0
    step_task = bar.task(f"epoch {epoch + 1}/{cfg.epochs}", len(sampler))
    for chunk in sampler.global_batches():
        mine = sampler.shard(chunk)
        if len(mine) == 0:
            continue
        index = torch.from_numpy(mine)
        if step.train_cache is not None:
            x = step.train_cache[variant, index]
        else:
            x = step.train_set.__getitems__([(epoch, int(i)) for i in mine]).images
        y = step.train_labels[index].to(device)
        with autocast(cfg.precision, device):
            logits = step.tail(layout(x.to(device), cfg.channels_last)).float()
        norm = step.weights[step.train_labels[torch.from_numpy(chunk)]].sum().to(device)
        step_loss, step_correct, step_weight = weighted_step(
            step.optimizer, logits, y, step.device_weights, norm, dist.world
        )
        loss_sum += step_loss
        correct += step_correct
        seen += step_weight
        bar.advance(step_task, 1, info=f"loss {loss_sum / max(seen, 1e-12):.4f}")
    bar.hide(step_task)
    totals = all_reduce(torch.tensor([loss_sum, correct, seen]), dist, device)
    return float(totals[0] / totals[2]), float(totals[1] / n_train)


def validate(step: _Step) -> tuple[float, dict[str, Any]]:
    """The weighted validation loss and the validation metrics of the model as it is."""
    cfg = step.cfg
    step.model.eval()
    features = step.val_cache
    if features is None:
        features = step.val_set.__getitems__(list(range(len(step.val_set)))).images
    val_loss, val_probs = _evaluate_cached(
        step.tail_module, features, step.val_labels, step.weights, cfg.eval_batch_size,
        cfg.channels_last, cfg.precision, step.device,
    )  # fmt: skip
    return val_loss, classification_metrics(step.val_set.labels, val_probs)


def _evaluate_cached(
    tail: Callable[[torch.Tensor], torch.Tensor],
    features: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    batch_size: int,
    channels_last: bool,
    precision: str,
    device: torch.device = CPU,
) -> tuple[float, np.ndarray]:
    """Weighted mean loss and softmax probabilities of cached validation features."""
    probs = []
    total = torch.zeros((), dtype=torch.float64)
    norm = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for chunk in batches(np.arange(features.shape[0]), batch_size):
            index = torch.from_numpy(chunk)
            with autocast(precision, device):
                logits = tail(layout(features[index].to(device), channels_last)).float().cpu()
            y = labels[index]
            total += F.cross_entropy(logits, y, weight=weights, reduction="sum").double()
            norm += weights[y].sum().double()
            probs.append(torch.softmax(logits, dim=1).numpy())
    return float(total / norm), np.concatenate(probs)


def finish_run(
    run_dir: Path,
    history: list[dict[str, float]],
    best: BestEpoch,
    started: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The learning curve, the kept weights' validation and test metrics (with figures) and
    RUN/metrics.json; returns the metrics."""
    learning_curve(history, run_dir / runs.CURVE, best.epoch)
    metrics: dict[str, Any] = {"best_epoch": best.epoch, "best_val_loss": best.loss}
    for split in ("val", "test"):
        try:
            metrics[split] = evaluate_run(run_dir, split=split, figures=split == "test")
        except UserError as err:
            say(f"warning: no {split} metrics: {err}")
    metrics["seconds"] = time.perf_counter() - started
    runs.write_metrics(run_dir, metrics)
    say(f"kept epoch {best.epoch} (validation loss {best.loss:.4f})")
    return metrics
