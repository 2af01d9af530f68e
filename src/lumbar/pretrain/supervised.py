"""`lumbar pretrain supervised`: the paper's Procedure 2, a backbone trained on a labelled source.

Al-kubaisi & Khamiss train each backbone from scratch on Dataset A (16,441 brain-tumour MRI from
six public collections, grouped into normal and abnormal), then transfer it to the lumbar disc
task. Here the source is any set of class folders (`lumbar.pretrain.files.scan_labelled`), with
a YAML class map for the grouping. Paper defaults: 85/15 train/validation split, Adam at
lr 1e-5, batch 64, 100 epochs, the paper's augmentation, and the weights with the lowest
validation loss are kept, with their BatchNorm statistics recomputed over up to 1024
un-augmented training images (`bn_recalibration`; frozen transfer runs BatchNorm on them).

The split is made per file by a hash of its class folder and path inside it, mixed with the
seed: no list is held in memory beyond the paths, and adding files leaves earlier files on
their side. Files are decoded by DataLoader workers on the fly (`lumbar.pretrain.dataset`).
Under `torchrun` each process takes its share of every global batch (DDP, gloo on CPU, nccl
on GPUs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lumbar import runs
from lumbar.data.augment import Augmentation, parse_augmentation
from lumbar.data.sampler import EpochBatchSampler
from lumbar.errors import UserError
from lumbar.metrics import classification_metrics
from lumbar.models import Classifier, WeightSource, build_classifier, resolve_weights_at
from lumbar.pretrain.common import (
    PretrainResult,
    PretrainRun,
    PretrainSettings,
    Throughput,
    check_settings,
    readable,
    recalibrate_trunk,
    resume_state,
    run_pretraining,
    save_trunk,
    say_unreadable,
    unreadable_paths,
)
from lumbar.pretrain.dataset import (
    ImageFileDataset,
    make_stream_loader,
)
from lumbar.pretrain.distributed import all_gather_objects, dummy_batch, merge_unreadable
from lumbar.pretrain.files import LabelledFiles, hash_fraction, scan_labelled
from lumbar.progress import TrainingBars
from lumbar.train.runtime import (
    all_reduce,
    autocast,
    barrier,
    wrap_ddp,
)
from lumbar.train.steps import (
    BestEpoch,
    inverse_frequency_weights,
    save_epoch,
    weighted_step,
)
from lumbar.visualize.charts import learning_curve

__all__ = ["SupervisedPretrainConfig", "pretrain_supervised", "split_files"]

KIND = "supervised"
HISTORY_FIELDS = (
    "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1", "lr",
    "images_per_s", "seconds",
)  # fmt: skip


@dataclass
class SupervisedPretrainConfig(PretrainSettings):
    """Settings of a supervised source run; defaults are the paper's (Procedure 2).

    Attributes:
        data: roots of class folders (merged by folder name).
        backbone: registry name (`lumbar models`).
        classes: YAML folder -> class map; None: ROOT/classes.yaml if present, else each folder
            is its own class.
        val_fraction: share of files held out for validation (the paper's 15%).
        lr, batch_size, epochs: Adam learning rate, global batch, epochs.
        input_size: square input side; None keeps the backbone's (224).
        weights: starting weights; the paper trains from "scratch".
        augmentation: `lumbar.data.augment.parse_augmentation` spelling ("paper", "none", ...).
        class_weights: weight the loss by inverse class frequency (e.g. 3 tumour folders : 1).
        hidden, dropout: the classifier head during pretraining (discarded on transfer).
        seed, workers, threads, device, precision, max_images: as in `lumbar train`;
            max_images keeps a stable hashed subset (quick runs).
        bn_recalibration: after training, recompute the kept weights' BatchNorm statistics
            over this many un-augmented training images (0: keep the running averages); see
            `lumbar.pretrain.common.recalibrate_batchnorm`.
    """

    data: list[str]
    backbone: str = "vgg16"
    classes: str | None = None
    val_fraction: float = 0.15
    lr: float = 1e-5
    batch_size: int = 64
    epochs: int = 100
    input_size: int | None = None
    weights: str = "scratch"
    augmentation: str = "paper"
    class_weights: bool = True
    hidden: int = 256
    dropout: float = 0.2
    seed: int = 0
    workers: int = 2
    threads: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    max_images: int | None = None
    bn_recalibration: int = 1024
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> SupervisedPretrainConfig:
        """Check every field; raise a one-line UserError naming a bad value."""
        check_settings(
            self,
            ("val_fraction", 0.0 < self.val_fraction < 1.0,
             f"val_fraction must be between 0 and 1, got {self.val_fraction}"),
            ("batch_size", self.batch_size >= 1,
             f"batch_size must be at least 1, got {self.batch_size}"),
        )  # fmt: skip
        try:
            parse_augmentation(self.augmentation)
        except ValueError as err:
            raise UserError(str(err)) from None
        return self


def split_files(keys: list[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and validation files: a file is in validation when the hash of its
    key (class folder / path) and the seed falls below `val_fraction` (stable as files are added).
    """
    is_val = np.array([hash_fraction(key, seed) < val_fraction for key in keys], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def pretrain_supervised(
    config: SupervisedPretrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PretrainResult:
    """Train `config.backbone` on labelled class folders and write a pretraining run folder.

    Args:
        config: the run's settings.
        run_dir: the run folder (empty or absent, unless `resume`).
        resume: continue from RUN/last.pt (the saved config wins; a larger epochs extends it).
        progress: show progress bars with images/s (main process only).
        log: receives one-line notes and warnings.

    Returns:
        A `PretrainResult`; RUN/checkpoint.pt holds the trunk with the lowest validation loss.

    Raises:
        UserError: bad settings or data (one line).
    """
    return run_pretraining(KIND, _pretrain, config, run_dir, resume, progress, log)


def _pretrain(run: PretrainRun[SupervisedPretrainConfig]) -> PretrainResult:
    """The run itself, once the process group and the run folder are open: data, model, the
    epochs (train, validate, keep the lowest validation loss), then the kept trunk's metrics."""
    cfg, dist, device = run.cfg, run.dist, run.device
    files = scan_labelled(cfg.data, cfg.classes)
    for warning in files.warnings:
        run.say(f"warning: {warning}")
    train_idx, val_idx, train_counts = _split(files, cfg)

    source = resolve_weights_at(cfg.backbone, cfg.weights, cfg.input_size)
    torch.manual_seed(cfg.seed)
    model = build_classifier(
        cfg.backbone, len(files.class_names), source, hidden=cfg.hidden, dropout=cfg.dropout
    ).to(device)
    weights = (
        inverse_frequency_weights(np.asarray(train_counts))
        if cfg.class_weights
        else torch.ones(len(files.class_names))
    )
    preprocessing = source.preprocessing
    augmentation = parse_augmentation(cfg.augmentation)
    labels = np.asarray(files.labels, dtype=np.int64)
    train_set = ImageFileDataset(
        files.paths, preprocessing, labels=labels, augmentation=augmentation, seed=cfg.seed
    )
    val_set = ImageFileDataset(files.paths, preprocessing, labels=labels, seed=cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    first_epoch, history, bad = resume_state(run.state, model, optimizer, run.dir, files.paths)
    best = BestEpoch.from_state(run.state)
    if dist.main:
        described = _describe(cfg, source, augmentation, files, weights, train_idx, val_idx)
        runs.write_config(run.dir, {**described, "world_size": dist.world})

    net = wrap_ddp(model, dist, device)
    device_weights = weights.to(device)
    bar = TrainingBars(run.progress and dist.main)
    try:
        epoch_task = bar.task("pretraining (supervised)", cfg.epochs, first_epoch)
        for epoch in range(first_epoch, cfg.epochs):
            t0 = time.perf_counter()
            model.train()
            active = readable(train_idx, bad)
            totals = _train_epoch(
                run, net, optimizer, train_set, active, bad, device_weights, epoch, bar
            )
            val_loss, val_metrics = _validate(
                model, val_set, val_idx, bad, cfg, device_weights, dist, device, epoch
            )
            bad = merge_unreadable(bad, dist)
            n_train = max(len(active) - len(bad & set(active.tolist())), 1)
            row = {
                "epoch": epoch + 1,
                "train_loss": float(totals[0] / max(float(totals[2]), 1e-12)),
                "train_accuracy": float(totals[1]) / n_train,
                "val_loss": val_loss,
                "val_accuracy": float(val_metrics["accuracy"]),
                "val_f1": float(val_metrics["f1"]),
                "lr": cfg.lr,
                "images_per_s": float(totals[3]) / max(time.perf_counter() - t0, 1e-9),
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            improved = best.update(epoch + 1, val_loss)
            if dist.main and improved:
                save_trunk(run.dir, model.backbone, head=model.head.state_dict(),
                           epoch=epoch + 1, val_loss=val_loss)  # fmt: skip
            save_epoch(
                run.dir, dist, model, optimizer, epoch + 1, history, HISTORY_FIELDS,
                **best.state(), unreadable=unreadable_paths(files.paths, bad),
            )  # fmt: skip
            bar.advance(epoch_task, info=f"loss {row['train_loss']:.4f} val_loss {val_loss:.4f} "
                        f"val_f1 {row['val_f1']:.3f} {row['images_per_s']:.1f} img/s")  # fmt: skip
    finally:
        bar.close()

    say_unreadable(run.say, len(bad), len(files))
    if dist.main:
        _finish(run, model, val_set, train_idx, bad, history, best, len(files))
    barrier(dist)
    return run.result(history, best.epoch, len(files) - len(bad), KIND)


def _split(
    files: LabelledFiles, cfg: SupervisedPretrainConfig
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The training and validation files (a stable subset of `max_images` if set) and the
    training images per class; refuses splits too small to train and validate on."""
    train_idx, val_idx = split_files(files.keys, cfg.val_fraction, cfg.seed)
    if cfg.max_images is not None:
        keep = {i for i in np.argsort([hash_fraction(k, cfg.seed + 1) for k in files.keys])[
            : cfg.max_images
        ]}  # fmt: skip
        train_idx = np.array([i for i in train_idx if i in keep], dtype=np.int64)
        val_idx = np.array([i for i in val_idx if i in keep], dtype=np.int64)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UserError(
            f"{len(files)} images are too few for a {cfg.val_fraction:.0%} validation split "
            f"({len(train_idx)} train, {len(val_idx)} validation); add images"
        )
    labels = np.asarray(files.labels, dtype=np.int64)
    train_counts = np.bincount(labels[train_idx], minlength=len(files.class_names)).tolist()
    if sum(1 for n in train_counts if n) < 2:
        raise UserError("the training split holds a single class; add images of the others")
    return train_idx, val_idx, train_counts


def _describe(
    cfg: SupervisedPretrainConfig,
    source: WeightSource,
    augmentation: Augmentation | None,
    files: LabelledFiles,
    weights: torch.Tensor,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
) -> dict[str, Any]:
    """The run's config.json (without the world size): the trunk's keys for `lumbar train
    --weights RUN`, the class names, every hyperparameter, and what the data came to."""
    return {
        "backbone": cfg.backbone,
        "preprocessing": source.preprocessing.to_dict(),
        "weights": source.to_config(),
        "class_names": files.class_names,
        "pretrain": {
            "kind": KIND,
            "method": "supervised",
            "procedure": 2,
            "config": asdict(cfg),
            "hyperparameters": {
                "optimizer": "adam", "lr": cfg.lr, "batch_size": cfg.batch_size,
                "epochs": cfg.epochs, "loss": "cross-entropy" + (
                    " (inverse-frequency class weights)" if cfg.class_weights else ""),
                "augmentation": repr(augmentation), "head": {"hidden": cfg.hidden,
                                                             "dropout": cfg.dropout},
                "checkpoint": "lowest validation loss",
                "batchnorm": f"statistics recomputed over {cfg.bn_recalibration} un-augmented "
                "training images with the kept weights" if cfg.bn_recalibration else "running",
            },
        },
        "data": {
            "images": len(files),
            "train_images": len(train_idx),
            "val_images": len(val_idx),
            "folders": files.folder_counts,
            "class_counts": files.class_counts(),
            "class_weights": [round(float(w), 6) for w in weights],
        },
    }  # fmt: skip


def _train_epoch(
    run: PretrainRun[SupervisedPretrainConfig],
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_set: ImageFileDataset,
    active: np.ndarray,
    bad: set[int],
    weights: torch.Tensor,
    epoch: int,
    bar: TrainingBars,
) -> torch.Tensor:
    """One epoch over the readable training files in the seeded order of `epoch`; returns the
    totals of all processes: weighted loss, weighted correct, weight, images."""
    cfg, dist, device = run.cfg, run.dist, run.device
    sampler = EpochBatchSampler(
        active, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch,
        rank=dist.rank, world=dist.world,
    )  # fmt: skip
    loader = make_stream_loader(train_set, sampler, cfg.workers)
    step_task = bar.task(f"epoch {epoch + 1}/{cfg.epochs}", len(sampler))
    meter = Throughput()
    loss_sum = correct = seen = 0.0
    for batch in loader:
        bad.update(batch.failed)
        x, y, w_scale = batch.images, batch.labels, 1.0
        if len(y) == 0:
            if not dist.active:
                bar.advance(step_task, info="")
                continue
            x, y, w_scale = (
                dummy_batch(train_set.preprocessing),
                torch.zeros(1, dtype=torch.int64),
                0.0,
            )
        x, y = x.to(device), y.to(device)
        with autocast(cfg.precision, device):
            logits = net(x).float()
        norm = all_reduce(logits.detach().new_tensor(
            [float((weights[y] * w_scale).sum())]), dist, device)  # fmt: skip
        step_loss, step_correct, step_weight = weighted_step(
            optimizer, logits, y, weights, norm, dist.world, w_scale
        )
        loss_sum += step_loss
        correct += step_correct
        seen += step_weight
        meter.add(int(len(y) * w_scale) * dist.world)
        bar.advance(step_task, info=f"loss {loss_sum / max(seen, 1e-12):.4f} "
                    f"{meter.rate:.1f} img/s")  # fmt: skip
    bar.hide(step_task)
    return all_reduce(torch.tensor([loss_sum, correct, seen, meter.images]), dist, device)


def _finish(
    run: PretrainRun[SupervisedPretrainConfig],
    model: Classifier,
    val_set: ImageFileDataset,
    train_idx: np.ndarray,
    bad: set[int],
    history: list[dict[str, float]],
    best: BestEpoch,
    images: int,
) -> None:
    """The main process's last step: recompute the kept trunk's BatchNorm statistics, draw
    the learning curve and write RUN/metrics.json."""
    cfg = run.cfg
    if cfg.bn_recalibration and best.epoch:
        checkpoint = runs.read_checkpoint(run.dir)
        trunk = {k[len("backbone.") :]: v for k, v in checkpoint.pop("model").items()}
        model.backbone.load_state_dict(trunk)
        count = recalibrate_trunk(model.backbone, val_set, train_idx, bad, cfg, run.device)
        save_trunk(run.dir, model.backbone, **{**checkpoint, "bn_recalibrated": count})
    learning_curve(history, run.dir / runs.CURVE, best.epoch)
    kept = history[best.epoch - 1] if best.epoch else {}
    run.write_metrics(
        best_epoch=best.epoch,
        best_val_loss=best.loss,
        val={k: kept[k] for k in ("val_loss", "val_accuracy", "val_f1") if k in kept},
        images=images,
        unreadable=len(bad),
    )
    run.say(f"kept epoch {best.epoch} (validation loss {best.loss:.4f})")


def _validate(
    model: torch.nn.Module,
    dataset: ImageFileDataset,
    val_idx: np.ndarray,
    bad: set[int],
    cfg: SupervisedPretrainConfig,
    weights: torch.Tensor,
    dist: Any,
    device: torch.device,
    epoch: int,
) -> tuple[float, dict[str, Any]]:
    """Weighted validation loss and metrics; each process scores its share, then all combine."""

    model.eval()
    active = readable(val_idx, bad)
    sampler = EpochBatchSampler(
        active, max(cfg.batch_size, 64), shuffle=False, seed=cfg.seed, epoch=epoch,
        rank=dist.rank, world=dist.world,
    )  # fmt: skip
    labels: list[int] = []
    probs: list[np.ndarray] = []
    with torch.no_grad():
        for batch in make_stream_loader(dataset, sampler, cfg.workers):
            bad.update(batch.failed)
            if len(batch.labels) == 0:
                continue
            with autocast(cfg.precision, device):
                logits = model(batch.images.to(device)).float().cpu()
            labels.extend(batch.labels.tolist())
            probs.append(torch.softmax(logits, 1).numpy())
    num_classes = int(weights.shape[0])
    mine = (labels, np.concatenate(probs) if probs else np.zeros((0, num_classes)))
    parts = all_gather_objects(mine) if dist.active else [mine]
    y = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in parts])
    p = np.concatenate([p[1] for p in parts])
    if len(y) == 0:
        raise UserError("no validation image could be read; check the data folders")
    w = weights.cpu().numpy()[y]
    nll = -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))
    loss = float((nll * w).sum() / max(w.sum(), 1e-12))
    return loss, classification_metrics(y, p)
