"""`lumbar pretrain unlabelled`: the paper's Procedure 3, a backbone trained on unlabelled MRI.

The paper pretrains on 209,083 unlabelled MRI images (Dataset B) without saying how a network
learns from images without labels. `lumbar` uses an established self-supervised method and
says which: **SimCLR** (Chen, Kornblith, Norouzi & Hinton, ICML 2020). Two random views of each
image go through the backbone and a projection MLP; the NT-Xent loss pulls the two views of an
image together and pushes the other 2N-2 images of the batch away. After training the
projection MLP is discarded and the backbone's trunk is the result.

Choices and hyperparameters (all recorded in RUN/config.json under "pretrain"):
    views         `lumbar.pretrain.dataset.SimCLRAugmentation`: random resized crop (area
                  0.35-1), horizontal and vertical flips, rotation +-10 degrees, brightness /
                  contrast / gamma (p 0.8), Gaussian blur (p 0.5), Gaussian noise (p 0.5); no
                  colour jitter or grayscale conversion (MRI is gray).
    projection    Linear(feature_dim, 512) - BatchNorm - ReLU - Linear(512, 128), on the
                  globally average-pooled trunk features (SimCLR v2's MLP, 2 layers).
    loss          NT-Xent at temperature 0.2 (0.1-0.5 work for batches of 64-256; lower
                  suits small batches less).
    optimiser     Adam, lr 1e-3, weight decay 1e-6, linear warm-up over the first 10% of the
                  epochs, then cosine decay to 0 (SimCLR uses LARS for batches of 4096; Adam is
                  the usual choice at the batch sizes of one or a few GPUs or a CPU).
    batch         128 images (256 views); under torchrun the embeddings of all processes are
                  gathered, so every image has 2N-2 negatives from the global batch.
    checkpoint    the last epoch (contrastive pretraining has no validation loss to select on),
                  with BatchNorm statistics recomputed over up to 1024 un-augmented images
                  (`bn_recalibration`), as frozen transfer runs BatchNorm on them.

Files stream from the folder tree (`lumbar.pretrain.files.scan_images`), decoded by DataLoader
workers; unreadable files are skipped, counted and reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lumbar import runs
from lumbar.data.sampler import EpochBatchSampler
from lumbar.errors import UserError
from lumbar.models import WeightSource, create_backbone, get_backbone_spec, resolve_weights_at
from lumbar.models.preprocessing import Preprocessing
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
    SimCLRAugmentation,
    make_stream_loader,
)
from lumbar.pretrain.distributed import (
    dummy_batch,
    gather_rows,
    merge_unreadable,
)
from lumbar.pretrain.files import ImageFiles, scan_images
from lumbar.progress import TrainingBars
from lumbar.train.runtime import (
    all_reduce,
    autocast,
    barrier,
    wrap_ddp,
)
from lumbar.train.steps import save_epoch
from lumbar.visualize.charts import contrastive_curve

__all__ = ["METHODS", "SSLPretrainConfig", "SimCLRModel", "nt_xent", "pretrain_unlabelled"]

KIND = "unlabelled"
METHODS = ("simclr",)
HISTORY_FIELDS = ("epoch", "loss", "contrastive_accuracy", "lr", "images_per_s", "seconds")


@dataclass
class SSLPretrainConfig(PretrainSettings):
    """Settings of a self-supervised run on unlabelled images (see the module docstring).

    Attributes:
        data: folders of images and/or DICOM files, nested to any depth.
        backbone: registry name (`lumbar models`).
        method: "simclr".
        epochs, batch_size, lr, weight_decay: the optimisation (batch = images, 2 views each).
        warmup_epochs: linear warm-up; None = 10% of the epochs.
        temperature: NT-Xent temperature.
        projection_hidden, projection_dim: the projection MLP (discarded after training).
        input_size: square input side; None keeps the backbone's (224).
        weights: starting weights ("scratch"; a run folder continues from other pretraining).
        augmentation: overrides of `SimCLRAugmentation` fields, e.g. {"crop_scale": [0.2, 1]}.
        max_images: train on a stable hashed subset of at most this many files.
        seed, workers, threads, device, precision: as in `lumbar train`.
        bn_recalibration: after training, recompute the trunk's BatchNorm statistics over this
            many un-augmented images (0: keep the running averages of the augmented views);
            see `lumbar.pretrain.common.recalibrate_batchnorm`.
    """

    data: list[str]
    backbone: str = "vgg16"
    method: str = "simclr"
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-6
    warmup_epochs: int | None = None
    temperature: float = 0.2
    projection_hidden: int = 512
    projection_dim: int = 128
    input_size: int | None = None
    weights: str = "scratch"
    augmentation: dict[str, Any] = field(default_factory=dict)
    max_images: int | None = None
    seed: int = 0
    workers: int = 2
    threads: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    bn_recalibration: int = 1024
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> SSLPretrainConfig:
        """Check every field; raise a one-line UserError naming a bad value."""
        check_settings(
            self,
            ("method", self.method in METHODS,
             f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}"),
            ("batch_size", self.batch_size >= 2,
             f"batch_size must be at least 2 (negatives), got {self.batch_size}"),
            ("weight_decay", self.weight_decay >= 0,
             f"weight_decay must be 0 or more, got {self.weight_decay}"),
            ("warmup_epochs", self.warmup_epochs is None or self.warmup_epochs >= 0,
             f"warmup_epochs must be 0 or more, got {self.warmup_epochs}"),
            ("temperature", self.temperature > 0,
             f"temperature must be positive, got {self.temperature}"),
            ("projection_dim", self.projection_hidden >= 1 and self.projection_dim >= 1,
             "projection_hidden and projection_dim must be at least 1"),
        )  # fmt: skip
        self.views()
        return self

    def views(self) -> SimCLRAugmentation:
        """The view augmentation, with this config's overrides."""
        known = set(SimCLRAugmentation.__dataclass_fields__)
        unknown = sorted(set(self.augmentation) - known)
        if unknown:
            raise UserError(
                f"unknown augmentation setting(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}"
            )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.augmentation.items()}
        try:
            return SimCLRAugmentation(**values)
        except (ValueError, TypeError) as err:
            raise UserError(f"augmentation: {err}") from None

    def warmup(self) -> int:
        """Warm-up epochs (10% of the run unless set)."""
        return self.epochs // 10 if self.warmup_epochs is None else self.warmup_epochs


class SimCLRModel(nn.Module):
    """A backbone trunk, global average pooling, and SimCLR's projection MLP."""

    def __init__(self, encoder: nn.Module, feature_dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = nn.Sequential(
            nn.Linear(feature_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder.forward_features(x)
        return self.projector(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, float]:
    """SimCLR's NT-Xent loss of paired embeddings (N, d), and the share of views whose most
    similar other view is their partner (the "contrastive accuracy", a training diagnostic)."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    loss = F.cross_entropy(similarity, targets)
    accuracy = float((similarity.argmax(1) == targets).float().mean())
    return loss, accuracy


def _lr_at(cfg: SSLPretrainConfig, progress: float) -> float:
    """Learning rate at `progress` epochs: linear warm-up, then cosine decay to 0."""
    warmup = cfg.warmup()
    if warmup > 0 and progress < warmup:
        return cfg.lr * (progress + 1e-3) / warmup
    span = max(cfg.epochs - warmup, 1e-9)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min((progress - warmup) / span, 1.0)))


def pretrain_unlabelled(
    config: SSLPretrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PretrainResult:
    """Self-supervised pretraining of `config.backbone` on unlabelled images (SimCLR), written
    to the run folder `run_dir`: the arguments, errors and run folder of
    `lumbar.pretrain.pretrain_supervised`, except that RUN/checkpoint.pt holds the trunk after
    the last epoch (contrastive learning has no validation loss to keep the lowest of).
    """
    return run_pretraining(KIND, _pretrain, config, run_dir, resume, progress, log)


def _pretrain(run: PretrainRun[SSLPretrainConfig]) -> PretrainResult:
    """The run itself, once the process group and the run folder are open: data, model, the
    epochs, then the final trunk's BatchNorm statistics and metrics."""
    cfg, dist, device = run.cfg, run.dist, run.device
    views = cfg.views()
    files = scan_images(cfg.data, max_images=cfg.max_images, seed=cfg.seed)
    if len(files) < 2:
        raise UserError(f"found {len(files)} image; contrastive learning needs at least 2")
    source = resolve_weights_at(cfg.backbone, cfg.weights, cfg.input_size)
    preprocessing = source.preprocessing
    torch.manual_seed(cfg.seed)
    encoder = create_backbone(cfg.backbone, source, num_classes=0)
    feature_dim = get_backbone_spec(cfg.backbone).feature_dim
    model = SimCLRModel(encoder, feature_dim, cfg.projection_hidden, cfg.projection_dim)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    dataset = ImageFileDataset(files.paths, preprocessing, views=views, seed=cfg.seed)

    first_epoch, history, bad = resume_state(run.state, model, optimizer, run.dir, files.paths)
    if dist.main:
        described = _describe(cfg, source, views, feature_dim, files)
        runs.write_config(run.dir, {**described, "world_size": dist.world})

    net = wrap_ddp(model, dist, device)
    bar = TrainingBars(run.progress and dist.main)
    try:
        epoch_task = bar.task(f"pretraining ({cfg.method})", cfg.epochs, first_epoch)
        for epoch in range(first_epoch, cfg.epochs):
            t0 = time.perf_counter()
            model.train()
            active = readable(range(len(files)), bad)
            loss_sum, acc_sum, counted, lr, images = _train_epoch(
                run, net, optimizer, dataset, active, bad, epoch, bar
            )
            bad = merge_unreadable(bad, dist)
            if counted == 0:
                raise UserError(
                    "no batch of two readable images in an epoch; check the data folders"
                )
            row = {
                "epoch": epoch + 1,
                "loss": loss_sum / counted,
                "contrastive_accuracy": acc_sum / counted,
                "lr": lr,
                "images_per_s": images / max(time.perf_counter() - t0, 1e-9),
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            if dist.main:
                save_trunk(run.dir, model.encoder, epoch=epoch + 1, loss=row["loss"])
            save_epoch(
                run.dir, dist, model, optimizer, epoch + 1, history, HISTORY_FIELDS,
                unreadable=unreadable_paths(files.paths, bad),
            )  # fmt: skip
            bar.advance(epoch_task, info=f"loss {row['loss']:.4f} "
                        f"acc {row['contrastive_accuracy']:.3f} "
                        f"{row['images_per_s']:.1f} img/s")  # fmt: skip
    finally:
        bar.close()

    say_unreadable(run.say, len(bad), len(files))
    if dist.main:
        _finish(run, model.encoder, preprocessing, files, bad, history)
    barrier(dist)
    return run.result(history, len(history), len(files) - len(bad), cfg.method)


def _describe(
    cfg: SSLPretrainConfig,
    source: WeightSource,
    views: SimCLRAugmentation,
    feature_dim: int,
    files: ImageFiles,
) -> dict[str, Any]:
    """The run's config.json (without the world size): the trunk's keys for `lumbar train
    --weights RUN`, the method and every hyperparameter, and what the data came to."""
    return {
        "backbone": cfg.backbone,
        "preprocessing": source.preprocessing.to_dict(),
        "weights": source.to_config(),
        "pretrain": {
            "kind": KIND,
            "method": cfg.method,
            "procedure": 3,
            "config": asdict(cfg),
            "hyperparameters": {
                "method": "SimCLR (Chen et al. 2020), NT-Xent loss",
                "temperature": cfg.temperature,
                "projection": f"Linear({feature_dim}, {cfg.projection_hidden})-BN-ReLU-"
                f"Linear({cfg.projection_hidden}, {cfg.projection_dim}), discarded",
                "optimizer": "adam", "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                "schedule": f"linear warm-up {cfg.warmup()} epochs, cosine decay to 0",
                "batch_size": cfg.batch_size, "epochs": cfg.epochs,
                "views": views.to_dict(),
                "checkpoint": "last epoch",
                "batchnorm": f"statistics recomputed over {cfg.bn_recalibration} un-augmented "
                "images with the final weights" if cfg.bn_recalibration else "running",
            },
        },
        "data": {"images": len(files), "roots": files.roots},
    }  # fmt: skip


def _train_epoch(
    run: PretrainRun[SSLPretrainConfig],
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: ImageFileDataset,
    active: np.ndarray,
    bad: set[int],
    epoch: int,
    bar: TrainingBars,
) -> tuple[float, float, float, float, int]:
    """One epoch of contrastive steps over the readable files in the seeded order of `epoch`
    (the learning rate follows `_lr_at` step by step); returns the sums of loss and contrastive
    accuracy over the images they count, that count, the last learning rate and the images
    seen by all processes."""
    cfg, dist, device = run.cfg, run.dist, run.device
    sampler = EpochBatchSampler(
        active, cfg.batch_size, shuffle=True, drop_last=True, seed=cfg.seed, epoch=epoch,
        rank=dist.rank, world=dist.world,
    )  # fmt: skip
    steps = len(sampler)
    step_task = bar.task(f"epoch {epoch + 1}/{cfg.epochs}", steps)
    meter = Throughput()
    loss_sum = acc_sum = counted = 0.0
    lr = cfg.lr
    for step, batch in enumerate(make_stream_loader(dataset, sampler, cfg.workers)):
        bad.update(batch.failed)
        images = batch.images
        n_local = len(batch.indices)
        n_global = n_local
        if dist.active:
            n_global = int(all_reduce(torch.tensor([n_local]), dist, device)[0])
        if n_global < 2:  # nothing to contrast (all files of the batch unreadable)
            bar.advance(step_task, info="")
            continue
        lr = _lr_at(cfg, epoch + step / max(steps, 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        if n_local == 0:  # keep this process in DDP's exchange; its rows are dropped
            x = dummy_batch(dataset.preprocessing).repeat(2, 1, 1, 1)
        else:
            x = torch.cat([images[:, 0], images[:, 1]])
        with autocast(cfg.precision, device):
            z = net(x.to(device)).float()
        if n_local == 0:
            z1 = z2 = z[:0]
            keep = z.sum() * 0.0  # gradient path for DDP, no contribution
        else:
            z1, z2, keep = z[:n_local], z[n_local:], 0.0
        if dist.active:
            z1, z2 = gather_rows(z1), gather_rows(z2)
        loss, accuracy = nt_xent(z1, z2, cfg.temperature)
        loss = loss + keep
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * n_global
        acc_sum += accuracy * n_global
        counted += n_global
        meter.add(n_global)
        bar.advance(step_task, info=f"loss {loss_sum / counted:.4f} "
                    f"{meter.rate:.1f} img/s")  # fmt: skip
    bar.hide(step_task)
    return loss_sum, acc_sum, counted, lr, meter.images


def _finish(
    run: PretrainRun[SSLPretrainConfig],
    encoder: nn.Module,
    preprocessing: Preprocessing,
    files: ImageFiles,
    bad: set[int],
    history: list[dict[str, float]],
) -> None:
    """The main process's last step: recompute the final trunk's BatchNorm statistics over
    un-augmented images, draw the loss curve and write RUN/metrics.json."""
    cfg = run.cfg
    if cfg.bn_recalibration and history:
        plain = ImageFileDataset(files.paths, preprocessing, seed=cfg.seed)
        count = recalibrate_trunk(encoder, plain, range(len(files)), bad, cfg, run.device)
        last_row = history[-1]
        save_trunk(run.dir, encoder, epoch=int(last_row["epoch"]), loss=last_row["loss"],
                   bn_recalibrated=count)  # fmt: skip
    contrastive_curve(history, run.dir / runs.CURVE)
    last = history[-1]
    run.write_metrics(
        best_epoch=int(last["epoch"]),
        final_loss=last["loss"],
        contrastive_accuracy=last["contrastive_accuracy"],
        images=len(files),
        unreadable=len(bad),
    )
