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
seed; on CPU the same seed and thread count give identical runs, and `--resume` restores the
RNG state so an interrupted run ends as an uninterrupted one would.

Distributed: under `torchrun` (env RANK/WORLD_SIZE) each process computes the cache for its
share of the images, the shares are combined, and every global batch is split across the
processes; the tail is wrapped in `DistributedDataParallel` (gloo on CPU, nccl on GPUs). The
loss is normalised by the whole global batch, so gradients equal those of one process.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lumbar import runs
from lumbar.data.augment import Augmentation, parse_augmentation
from lumbar.data.dataset import ManifestDataset
from lumbar.data.manifest import Manifest, read_manifest
from lumbar.data.splits import check_target_classes
from lumbar.data.targets import Target, get_target
from lumbar.errors import UserError
from lumbar.models import (
    Classifier,
    build_classifier,
    freeze_backbone,
    freeze_norm_statistics,
    list_backbones,
    resolve_weights_at,
    save_checkpoint,
    trainable_parameters,
    unfreeze_last,
)
from lumbar.progress import TrainingBars
from lumbar.train.runtime import (
    CPU,
    Dist,
    all_reduce,
    autocast,
    barrier,
    init_distributed,
    pick_device,
    wrap_ddp,
)
from lumbar.visualize.charts import learning_curve

__all__ = [
    "PrefixCache",
    "TrainConfig",
    "TrainResult",
    "compute_prefix",
    "extend_prefix",
    "inverse_frequency_weights",
    "load_config_file",
    "train",
    "weighted_step",
]

MODES = ("frozen", "finetune")
PRECISIONS = ("auto", "fp32", "bf16")
SINGLE_PROCESS = Dist()  # a run outside torchrun
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
class TrainConfig:
    """Everything a run depends on; defaults are the paper's (DESIGN.md, "Defaults").

    Attributes:
        manifest: manifest CSV with a split column.
        target: training target (`lumbar.data.targets.TARGETS`).
        backbone: registry name (`lumbar models`).
        weights: "imagenet", "scratch", a weights file or a run folder.
        mode: "frozen" (train the head only) or "finetune" (also the last `unfreeze` units).
        unfreeze: units of the trunk to train in finetune mode, counted from the end.
        unfreeze_unit: "block" (a VGG block, a residual block) or "layer" (a convolution).
        roi: ROI applied by the loader: "none" (e.g. a dataset already cropped by
            `lumbar roi`), "grid" (Eq. 3) or "center:F".
        head, hidden, dropout: the classifier (`ClassifierHead`).
        epochs: None = 50 for transfer learning, 100 from scratch.
        batch_size: images per (global) batch.
        lr: None = 1e-3 frozen, 1e-5 fine-tuning or from scratch (Adam).
        augmentation: "paper", "none", or parts (`lumbar.data.augment.parse_augmentation`).
        aug_variants: augmented copies per image kept by the feature cache (see module doc).
        class_weights: weight the loss by inverse class frequency (imbalanced targets).
        early_stop: stop after this many epochs without a lower validation loss (0 = never).
        seed: seeds shuffling, augmentation, initialisation and dropout.
        cache_features: cache the frozen prefix (False: the naive loop, for benchmarks).
        channels_last: run convolutions in NHWC layout (faster with oneDNN and cuDNN).
        precision: "auto" (bf16 autocast where the hardware has native bf16, else fp32),
            "fp32" or "bf16".
        input_size: override the weights' input size (square side in pixels), e.g. for quick
            experiments; None keeps the weights' own.
        bn_momentum: BatchNorm momentum of the backbone (None: the architecture's default).
        bn_stats: "frozen" keeps BatchNorm statistics of unfrozen layers fixed while their
            scale and shift learn (Keras' fine-tuning advice; the default), "update" lets
            them follow the training batches.
        threads: torch CPU threads (None: torch's default); fixes results across machines.
        device: "auto" (the process's GPU under torchrun, else GPU 0 if any, else CPU), "cpu"
            or "cuda".
    """

    manifest: str
    target: str = "disc_abnormal"
    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    mode: str = "frozen"
    unfreeze: int = 1
    unfreeze_unit: str = "block"
    roi: str = "none"
    head: str = "pool"
    hidden: int = 256
    dropout: float = 0.2
    epochs: int | None = None
    batch_size: int = 64
    lr: float | None = None
    augmentation: str = "paper"
    aug_variants: int = 4
    class_weights: bool = True
    early_stop: int = 0
    seed: int = 0
    cache_features: bool = True
    channels_last: bool = True
    precision: str = "auto"
    input_size: int | None = None
    bn_momentum: float | None = None
    bn_stats: str = "frozen"
    threads: int | None = None
    device: str = "auto"
    eval_batch_size: int = 128
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> TrainConfig:
        """A copy with the paper's defaults filled in and every field checked.

        Raises:
            UserError: a value out of range, with what to use instead.
        """
        cfg = dataclasses.replace(self)
        if cfg.mode not in MODES:
            raise UserError(f"--mode must be frozen or finetune, got {cfg.mode!r}")
        if cfg.bn_stats not in ("frozen", "update"):
            raise UserError(f"--bn-stats must be frozen or update, got {cfg.bn_stats!r}")
        if cfg.backbone not in list_backbones():
            raise UserError(
                f"unknown backbone {cfg.backbone!r}; choose one of {', '.join(list_backbones())}"
            )
        get_target(cfg.target)
        scratch = str(cfg.weights) == "scratch"
        if cfg.epochs is None:
            cfg.epochs = 100 if scratch else 50
        if cfg.lr is None:
            cfg.lr = 1e-3 if cfg.mode == "frozen" and not scratch else 1e-5
        checks = [
            (cfg.epochs >= 1, f"--epochs must be at least 1, got {cfg.epochs}"),
            (cfg.batch_size >= 1, f"--batch-size must be at least 1, got {cfg.batch_size}"),
            (cfg.lr > 0 and math.isfinite(cfg.lr), f"--lr must be positive, got {cfg.lr}"),
            (cfg.aug_variants >= 1, f"aug_variants must be at least 1, got {cfg.aug_variants}"),
            (cfg.early_stop >= 0, f"--early-stop must be 0 (off) or more, got {cfg.early_stop}"),
            (cfg.unfreeze >= 0, f"--unfreeze must be 0 or more, got {cfg.unfreeze}"),
            (
                cfg.unfreeze_unit in ("block", "layer"),
                f"unfreeze_unit must be block or layer, got {cfg.unfreeze_unit!r}",
            ),
            (
                cfg.precision in PRECISIONS,
                f"precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}",
            ),
            (
                cfg.input_size is None or cfg.input_size >= 16,
                f"input_size must be at least 16 pixels, got {cfg.input_size}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        try:
            parse_augmentation(cfg.augmentation)
        except ValueError as err:
            raise UserError(str(err)) from None
        return cfg


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config file of `TrainConfig` fields; unknown keys are an error.

    Raises:
        UserError: unreadable file, not a mapping, or unknown keys (listing the known ones).
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserError(
            f"cannot read config file {Path(path).name}: {err}".splitlines()[0]
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"config file {Path(path).name} must hold a mapping of option: value")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(
            f"config file {Path(path).name}: unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known - {'extra'}))}"
        )
    return data


@dataclass
class TrainResult:
    """What `train` returns: the run folder, the epoch history and the best epoch."""

    run_dir: Path
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    metrics: dict[str, Any]
    seconds: float


# --------------------------------------------------------------------------- feature cache


class _Tail(nn.Module):
    """The trainable part of a Classifier: stages `start`.. plus the head (DDP wraps this)."""

    def __init__(self, model: Classifier, start: int) -> None:
        super().__init__()
        self.model = model
        self.start = start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_tail(x, self.start)


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _run_stages(
    model: Classifier,
    inputs: Iterable[tuple[int, np.ndarray, torch.Tensor]],
    shape: tuple[int, int],
    start: int,
    stop: int,
    *,
    channels_last: bool,
    precision: str,
    pool: nn.Module | None,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor | None:
    """Stages `start`..`stop - 1` (and `pool`) on each (variant, indices, input) batch.

    Each output is stored at [variant, indices] of a `shape` + (...) float32 tensor in host
    memory; None when `inputs` held no batch. The caller puts `model` in inference mode.
    """
    cache: torch.Tensor | None = None
    for v, chunk, x in inputs:
        with autocast(precision, device):
            out = model.forward_stages(_layout(x.to(device), channels_last), start, stop)
            if pool is not None:
                out = pool(out)
        out = out.float().cpu()
        if cache is None:
            cache = torch.zeros((*shape, *out.shape[1:]), dtype=torch.float32)
        cache[v, torch.from_numpy(chunk)] = out
        if progress is not None:
            progress(len(chunk))
    return cache


@torch.no_grad()
def compute_prefix(
    model: Classifier,
    dataset: ManifestDataset,
    stop: int,
    *,
    variants: int,
    batch_size: int,
    channels_last: bool,
    precision: str,
    dist_info: Dist = SINGLE_PROCESS,
    progress: Callable[[int], None] | None = None,
    pool: nn.Module | None = None,
    device: torch.device = CPU,
) -> torch.Tensor:
    """Output of trunk stages 0..stop-1 for every image and variant: (variants, N, ...) float32.

    Variant v of image i is the image as the augmentation draws it in epoch v (no augmentation:
    one variant). Under torchrun each process computes images rank::world and the parts are
    summed into the full cache on every process. The cache lives in host memory. `pool`, when
    given, is applied to the output before it is stored: the head's own pooling when the whole
    trunk is frozen, which is a fixed function too (and idempotent), so the cache holds 1x1 (or
    grid-sized) maps.
    """
    was_training = model.training
    model.eval()
    n = len(dataset)
    mine = np.arange(dist_info.rank, n, dist_info.world)
    images = (
        (v, chunk, dataset.__getitems__([(v, int(i)) for i in chunk]).images)
        for v in range(variants)
        for chunk in _batches(mine, batch_size)
    )
    cache = _run_stages(
        model, images, (variants, n), 0, stop, channels_last=channels_last, precision=precision,
        pool=pool, device=device, progress=progress,
    )  # fmt: skip
    if cache is None:  # this process had no image (more processes than images)
        first = model.forward_stages(dataset[0][0][None].to(device), 0, stop)
        shape = (first if pool is None else pool(first)).shape[1:]
        cache = torch.zeros((variants, n, *shape), dtype=torch.float32)
    all_reduce(cache, dist_info, device)
    model.train(was_training)
    return cache


@torch.no_grad()
def extend_prefix(
    model: Classifier,
    base: torch.Tensor,
    start: int,
    stop: int,
    *,
    batch_size: int,
    channels_last: bool,
    precision: str,
    pool: nn.Module | None = None,
    device: torch.device = CPU,
) -> torch.Tensor:
    """`compute_prefix` up to `stop` from a cache `base` of stages 0..start-1 (same images).

    Runs stages `start`..`stop - 1` (and `pool`) on every cached tensor, in the batches
    `compute_prefix` uses, so a deeper prefix is derived from a shallower one without decoding
    or recomputing the first stages (a frozen run reusing its fine-tuning twin's cache).
    """
    was_training = model.training
    model.eval()
    variants, n = base.shape[:2]
    cached = (
        (v, chunk, base[v, torch.from_numpy(chunk)])
        for v in range(variants)
        for chunk in _batches(np.arange(n), batch_size)
    )
    cache = _run_stages(
        model, cached, (variants, n), start, stop, channels_last=channels_last,
        precision=precision, pool=pool, device=device,
    )  # fmt: skip
    model.train(was_training)
    assert cache is not None
    return cache


class PrefixCache(Protocol):
    """Where `train` may get its frozen-prefix cache instead of computing it (see `train`).

    `fetch` returns the (variants, N, ...) tensor `compute_prefix(model, dataset, stop, ...)`
    would return; `compute(stop, pool)` computes it (or a shallower prefix, for a store that
    keeps intermediate stages) and `extend(base, start, stop, pool)` derives a deeper prefix
    from a shallower one. `lumbar.experiment.cache.DiskPrefixCache` shares it between runs.
    """

    def fetch(
        self,
        model: Classifier,
        dataset: ManifestDataset,
        *,
        stop: int,
        pool: nn.Module | None,
        variants: int,
        settings: dict[str, Any],
        compute: Callable[[int, nn.Module | None], torch.Tensor],
        extend: Callable[[torch.Tensor, int, int, nn.Module | None], torch.Tensor],
    ) -> torch.Tensor: ...


# --------------------------------------------------------------------------- data


def _check_manifest(manifest: Manifest, target: Target) -> list[str]:
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


def inverse_frequency_weights(counts: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights n / (C x n_c) (scikit-learn's "balanced"); 0 for absent."""
    counts = counts.astype(np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def weighted_step(
    optimizer: torch.optim.Optimizer,
    logits: torch.Tensor,
    y: torch.Tensor,
    class_weights: torch.Tensor,
    norm: torch.Tensor,
    world: int,
    scale: float = 1.0,
) -> tuple[float, float, float]:
    """One optimiser step on the class-weighted cross-entropy of this process's `logits`.

    The loss is the global batch's weighted mean: `norm` is the summed class weight of the
    whole global batch, and DDP averages gradients over the `world` processes. `scale` (0 or 1)
    weights every image of the batch (0: a placeholder batch that only keeps DDP in step).

    Returns:
        This batch's weighted loss sum, correct predictions and summed weight.
    """
    per_image = F.cross_entropy(logits, y, reduction="none") * class_weights[y] * scale
    loss = per_image.sum() / norm.clamp_min(1e-12) * world
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return (
        float(per_image.sum().detach()),
        float(((logits.argmax(1) == y).float() * scale).sum()),
        float((class_weights[y] * scale).sum()),
    )


# --------------------------------------------------------------------------- the run


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
        hidden=cfg.hidden,
        dropout=cfg.dropout,
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
    from lumbar.models.weights import read_weights_file

    if run_dir is None or not (Path(run_dir) / runs.CHECKPOINT).is_file():
        return False
    state = read_weights_file(Path(run_dir) / runs.CHECKPOINT)
    head = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
    own = model.head.state_dict()
    if set(head) != set(own) or any(head[k].shape != own[k].shape for k in own):
        return False
    model.head.load_state_dict(head)
    return True


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
        for chunk in _batches(np.arange(features.shape[0]), batch_size):
            index = torch.from_numpy(chunk)
            with autocast(precision, device):
                logits = tail(_layout(features[index].to(device), channels_last)).float().cpu()
            y = labels[index]
            total += F.cross_entropy(logits, y, weight=weights, reduction="sum").double()
            norm += weights[y].sum().double()
            probs.append(torch.softmax(logits, dim=1).numpy())
    return float(total / norm), np.concatenate(probs)


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
    dist_info = init_distributed()
    saved, state = runs.open_run_folder(run_dir, resume, "lumbar train")
    if saved is not None:  # resume: the run's own settings; a larger `epochs` extends it
        epochs = max(int(saved["train"]["epochs"]), int(config.epochs or 0))
        config = TrainConfig(**{**saved["train"], "epochs": epochs})
    cfg = config.resolved()
    assert cfg.epochs is not None and cfg.lr is not None
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    target = get_target(cfg.target)
    manifest = read_manifest(Path(cfg.manifest))
    for warning in _check_manifest(manifest, target):
        say(f"warning: {warning}")

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = _model_for(cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    augmentation: Augmentation | None = parse_augmentation(cfg.augmentation)
    preprocessing = model.preprocessing
    train_set = ManifestDataset(
        manifest, preprocessing, target=cfg.target, split="train", roi=cfg.roi,
        augmentation=augmentation, seed=cfg.seed, decode_threads=2,
    )  # fmt: skip
    val_set = ManifestDataset(
        manifest, preprocessing, target=cfg.target, split="val", roi=cfg.roi, seed=cfg.seed,
        decode_threads=2,
    )  # fmt: skip
    counts = train_set.class_counts()
    weights = (
        inverse_frequency_weights(counts) if cfg.class_weights else torch.ones(target.num_classes)
    )
    stop = model.num_frozen_stages() if cfg.cache_features else 0
    # whole trunk frozen: cache after the head's pooling too (49x smaller for a 7x7 map)
    pool = model.head.pool if stop == len(model.stages()) else None
    variants = 1 if augmentation is None else min(cfg.aug_variants, cfg.epochs)

    run_config = {
        **model.config(),
        "target": target.name,
        "class_names": list(target.class_names),
        "roi": cfg.roi,
        "manifest": str(Path(cfg.manifest).resolve()),
        "train": {**asdict(cfg), "manifest": str(Path(cfg.manifest).resolve())},
        "data": {
            "train_images": len(train_set),
            "val_images": len(val_set),
            "class_counts": counts.tolist(),
            "class_weights": [round(float(w), 6) for w in weights],
        },
        "trainable_parameters": sum(p.numel() for p in trainable_parameters(model)),
        "cached_stages": stop,
        "world_size": dist_info.world,
    }
    if dist_info.main:
        runs.write_config(run_dir, run_config)

    params = trainable_parameters(model)
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    history: list[dict[str, float]] = []
    best_val_loss, best_epoch, stale, first_epoch = math.inf, 0, 0, 0
    if state is not None:
        first_epoch = runs.restore_training_state(state, model, optimizer)
        best_val_loss = float(state["best_val_loss"])
        best_epoch, stale = int(state["best_epoch"]), int(state["stale"])
        history = runs.read_history(run_dir)[:first_epoch]

    bar = TrainingBars(progress and dist_info.main)
    try:
        tail_module = _Tail(model, stop)
        tail = wrap_ddp(tail_module, dist_info, device)
        device_weights = weights.to(device)
        train_labels = torch.from_numpy(train_set.labels)
        val_labels = torch.from_numpy(val_set.labels)
        train_cache = val_cache = None
        if cfg.cache_features:
            task = bar.task("caching frozen layers", variants * len(train_set) + len(val_set))
            tick = lambda n: bar.advance(task, n)  # noqa: E731

            def fill(dataset: ManifestDataset, n: int) -> torch.Tensor:
                def compute(upto: int, with_pool: nn.Module | None) -> torch.Tensor:
                    return compute_prefix(
                        model, dataset, upto, variants=n, batch_size=cfg.eval_batch_size,
                        channels_last=cfg.channels_last, precision=cfg.precision,
                        dist_info=dist_info, progress=tick, pool=with_pool, device=device,
                    )  # fmt: skip

                if prefix_cache is None or dist_info.active:
                    return compute(stop, pool)

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
                cached = prefix_cache.fetch(
                    model, dataset, stop=stop, pool=pool, variants=n, settings=settings,
                    compute=compute, extend=extend,
                )  # fmt: skip
                return cached

            train_cache = fill(train_set, variants)
            val_cache = fill(val_set, 1)[0]
            bar.hide(task)

        epoch_task = bar.task("training", cfg.epochs)
        bar.advance(epoch_task, first_epoch)
        n_train = len(train_set)
        steps = math.ceil(n_train / cfg.batch_size)
        for epoch in range(first_epoch, cfg.epochs):
            t0 = time.perf_counter()
            model.train()
            order = np.random.default_rng([cfg.seed, epoch]).permutation(n_train)
            variant = epoch % variants
            loss_sum = correct = seen = 0.0
            step_task = bar.task(f"epoch {epoch + 1}/{cfg.epochs}", steps)
            for chunk in _batches(order, cfg.batch_size):
                mine = chunk[dist_info.rank :: dist_info.world]
                if len(mine) == 0:
                    continue
                index = torch.from_numpy(mine)
                if train_cache is not None:
                    x = train_cache[variant, index]
                else:
                    x = train_set.__getitems__([(epoch, int(i)) for i in mine]).images
                y = train_labels[index].to(device)
                with autocast(cfg.precision, device):
                    logits = tail(_layout(x.to(device), cfg.channels_last)).float()
                norm = weights[train_labels[torch.from_numpy(chunk)]].sum().to(device)
                step_loss, step_correct, step_weight = weighted_step(
                    optimizer, logits, y, device_weights, norm, dist_info.world
                )
                loss_sum += step_loss
                correct += step_correct
                seen += step_weight
                bar.advance(step_task, 1, info=f"loss {loss_sum / max(seen, 1e-12):.4f}")
            bar.hide(step_task)
            totals = all_reduce(torch.tensor([loss_sum, correct, seen]), dist_info, device)
            train_loss = float(totals[0] / totals[2])
            train_acc = float(totals[1] / n_train)
            model.eval()
            if val_cache is not None:
                val_loss, val_probs = _evaluate_cached(
                    tail_module, val_cache, val_labels, weights, cfg.eval_batch_size,
                    cfg.channels_last, cfg.precision, device,
                )  # fmt: skip
            else:
                val_images = val_set.__getitems__(list(range(len(val_set)))).images
                val_loss, val_probs = _evaluate_cached(
                    tail_module, val_images, val_labels, weights, cfg.eval_batch_size,
                    cfg.channels_last, cfg.precision, device,
                )  # fmt: skip
            from lumbar.metrics import classification_metrics

            val_metrics = classification_metrics(val_set.labels, val_probs)
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "val_loss": val_loss,
                "val_accuracy": val_metrics["accuracy"],
                "val_f1": val_metrics["f1"],
                "lr": cfg.lr,
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            improved = val_loss < best_val_loss
            if improved:
                best_val_loss, best_epoch, stale = val_loss, epoch + 1, 0
            else:
                stale += 1
            if dist_info.main:
                if improved:
                    save_checkpoint(run_dir, model, epoch=epoch + 1, val_loss=val_loss)
                runs.save_training_state(
                    run_dir, model, optimizer, epoch + 1,
                    best_val_loss=best_val_loss, best_epoch=best_epoch, stale=stale,
                )  # fmt: skip
                runs.write_history(run_dir, history, HISTORY_FIELDS)
            bar.advance(
                epoch_task,
                1,
                info=f"loss {train_loss:.4f} val_loss {val_loss:.4f} "
                f"val_acc {val_metrics['accuracy']:.3f} val_f1 {val_metrics['f1']:.3f}",
            )
            if cfg.early_stop and stale >= cfg.early_stop:
                say(f"early stop: no lower validation loss for {stale} epochs")
                break
    finally:
        bar.close()

    metrics: dict[str, Any] = {}
    if dist_info.main:
        learning_curve(history, run_dir / runs.CURVE, best_epoch)
        from lumbar.train.evaluate import evaluate_run

        metrics = {"best_epoch": best_epoch, "best_val_loss": best_val_loss}
        for split in ("val", "test"):
            try:
                metrics[split] = evaluate_run(run_dir, split=split, figures=split == "test")
            except UserError as err:
                say(f"warning: no {split} metrics: {err}")
        metrics["seconds"] = time.perf_counter() - started
        runs.write_metrics(run_dir, metrics)
        say(f"kept epoch {best_epoch} (validation loss {best_val_loss:.4f})")
    barrier(dist_info)
    return TrainResult(
        run_dir, history, best_epoch, best_val_loss, metrics, time.perf_counter() - started
    )
