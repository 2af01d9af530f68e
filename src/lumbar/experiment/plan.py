"""The grid expanded into runs: stable ids, dependencies, and a cost estimate per run.

A run id names what the paper's tables name: procedure, backbone, weight source, mode, ROI,
and seed or fold (`p1-vgg16-imagenet-finetune-roi-s0`), plus the target and dataset when they
are not the only ones. Ids depend only on those values, so a rerun of the same config finds its
finished runs again.

Costs are seconds on this machine, from the multiply-accumulates of each trunk stage at the
run's input size (counted on the meta device, `lumbar.models.flops`), the number of images and
epochs, and what the frozen-prefix cache saves: the prefix runs once per image and augmentation
variant, shared by every run with the same prefix (`lumbar.experiment.cache`); each epoch runs
only the tail. The rate is calibrated on `benchmarks/train.csv` (VGG16's prefix at 224 px:
164 ms per image on 2 cores, about 95 GMAC/s; a training step is about 3x a forward pass).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import re
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from lumbar.data.manifest import read_manifest
from lumbar.data.targets import get_target
from lumbar.experiment.config import DatasetConfig, ExperimentConfig
from lumbar.models import build_classifier, freeze_backbone, resolve_weights, unfreeze_last
from lumbar.train import TrainConfig

__all__ = [
    "Plan",
    "PretrainSpec",
    "RunSpec",
    "dataset_manifest",
    "expand",
    "format_duration",
    "format_plan",
]

MACS_PER_SECOND_2_CORES = 95e9  # benchmarks/train.csv: VGG16 prefix 163.7 ms/image at 224 px
# depthwise convolutions run far below the dense-convolution rate (measured: MobileNetV2 and
# EfficientNet-Lite0 at about a quarter of VGG16's MAC/s on this CPU)
EFFICIENCY = {"mobilenet_v2": 0.25, "efficientnet_lite0": 0.25, "resnet50": 0.8}
DECODE_SECONDS = 0.004  # decode + resize + ROI of one image (benchmarks/loader.py order)
EPOCH_OVERHEAD_SECONDS = 0.3  # metrics, checkpoint and last.pt per epoch
AXIAL_PER_PATIENT = 5  # labelled axial images per patient (one per disc level)
DEFAULT_SIZE = 224


@dataclass
class PretrainSpec:
    """One pretraining run (EXP/pretrain/<id>/), a weight source for the runs that use it."""

    id: str
    name: str
    kind: str
    backbone: str
    method: str | None
    data: list[str]
    config: dict[str, Any]
    cost: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunSpec:
    """One `lumbar train` run of the grid (EXP/runs/<id>/); JSON as in the report contract."""

    id: str
    procedure: int
    dataset: str
    backbone: str
    weights: str
    source: str
    mode: str
    roi: str
    target: str
    seed: int
    fold: int | None
    train: dict[str, Any]
    init_from: str | None = None
    after: list[str] = field(default_factory=list)
    manifest: str = ""
    cost: float = 0.0
    naive_cost: float = 0.0
    prefix_group: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Plan:
    """Everything an experiment will do, in dependency order."""

    name: str
    datasets: dict[str, dict[str, str | None]]
    pretrain: list[PretrainSpec]
    runs: list[RunSpec]

    @property
    def cost(self) -> float:
        return sum(p.cost for p in self.pretrain) + sum(r.cost for r in self.runs)

    @property
    def naive_cost(self) -> float:
        return sum(p.cost for p in self.pretrain) + sum(r.naive_cost for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datasets": self.datasets,
            "pretrain": [p.to_dict() for p in self.pretrain],
            "runs": [r.to_dict() for r in self.runs],
        }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "", text.lower().replace(":", "").replace(".", "p"))


def _roi_tag(roi: str) -> str:
    text = roi.strip().lower()
    if text == "none":
        return "noroi"
    if text == "grid":
        return "roi"
    return f"roi-{_slug(text)}"


def dataset_manifest(exp: Path, dataset: DatasetConfig) -> Path:
    """The manifest the runs of `dataset` train on (built under EXP/datasets/ when needed)."""
    if dataset.manifest is not None and _has_split(dataset.manifest):
        return dataset.manifest
    return exp / "datasets" / dataset.name / "manifest.csv"


def fold_manifest(exp: Path, dataset: str, fold: int) -> Path:
    """Fold `fold`'s manifest: that fold is the validation split, the other folds train."""
    return exp / "datasets" / dataset / "folds" / f"fold-{fold}" / "manifest.csv"


def _has_split(path: Path) -> bool:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return "split" in (next(csv.reader(handle), None) or [])
    except OSError:
        return True  # missing: `lumbar train` reports it, naming the file


def _split_sizes(
    manifest: Path, dataset: DatasetConfig, cfg: ExperimentConfig, target: str
) -> tuple[int, int]:
    """(train, val) images with a `target` label: counted when the manifest exists, else
    estimated from the patients the config declares (5 labelled axial images each)."""
    if manifest.is_file() and _has_split(manifest):
        m = read_manifest(manifest)
        chosen = get_target(target)
        labels = chosen.encode(m.grades(chosen.column)) if m.has_column(chosen.column) else None
        counts = {"train": 0, "val": 0}
        for i, split in enumerate(m.column("split")):
            if split in counts and (labels is None or labels[i] >= 0):
                counts[split] += 1
        return counts["train"], counts["val"]
    patients = 100
    if dataset.synth is not None:
        patients = int(dataset.synth["patients"])
    elif dataset.labels is not None and dataset.labels.is_file():
        with open(dataset.labels, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        key = next((k for k in (rows[0] if rows else {}) if "patient" in k.lower()), None)
        patients = len({r[key] for r in rows}) if key else max(1, len(rows) // 5)
    images = patients * AXIAL_PER_PATIENT
    return round(images * cfg.split_ratios[0]), round(images * cfg.split_ratios[1])


@cache
def stage_macs(backbone: str, size: int) -> tuple[float, ...]:
    """Multiply-accumulates of each trunk stage for one `size` x `size` image (meta device)."""
    import torch
    from torch import nn

    with torch.device("meta"):
        model = build_classifier(backbone, 2, resolve_weights(backbone, "scratch"))
    counter = [0]

    def conv_hook(module: nn.Conv2d, _inputs: Any, out: torch.Tensor) -> None:
        kh, kw = module.kernel_size
        counter[0] += out[0].numel() * (module.in_channels // module.groups) * kh * kw

    handles = [
        m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)
    ]
    macs = []
    with torch.no_grad():
        x = torch.zeros(1, 3, size, size, device="meta")
        for _, stage in model.eval().stages():
            counter[0] = 0
            x = stage(x)
            macs.append(float(counter[0]))
    for handle in handles:
        handle.remove()
    return tuple(macs)


@cache
def frozen_stop(backbone: str, mode: str, unfreeze: int, unit: str) -> int:
    """How many leading stages a run caches (`Classifier.num_frozen_stages`)."""
    import torch

    with torch.device("meta"):
        model = build_classifier(backbone, 2, resolve_weights(backbone, "scratch"))
    if mode == "frozen":
        freeze_backbone(model)
    else:
        unfreeze_last(model, unfreeze, unit=unit)
    return model.num_frozen_stages()


def _rate(backbone: str, threads: int = 2) -> float:
    return MACS_PER_SECOND_2_CORES * EFFICIENCY.get(backbone, 1.0) * max(threads, 1) / 2


def _train_value(train: dict[str, Any], key: str) -> Any:
    if key in train:
        return train[key]
    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == key)


def run_costs(
    backbone: str,
    mode: str,
    weights: str,
    train: dict[str, Any],
    n_train: int,
    n_val: int,
    *,
    prefix_shared: bool,
    threads: int = 2,
) -> tuple[float, float, float]:
    """(cached cost, naive cost, prefix-fill part of the cached cost), in seconds.

    Naive: every epoch a forward and backward of the whole network over the training images
    and a forward over the validation images. Cached: the prefix once per image and variant
    (nothing when another run already filled the same cache), then the tail every epoch.
    """
    size = int(_train_value(train, "input_size") or DEFAULT_SIZE)
    epochs = _train_value(train, "epochs") or (100 if weights == "scratch" else 50)
    variants = min(int(_train_value(train, "aug_variants")), int(epochs))
    if _train_value(train, "augmentation") == "none":
        variants = 1
    macs = stage_macs(backbone, size)
    full = sum(macs)
    rate = _rate(backbone, threads)
    naive = epochs * ((3 * n_train + n_val) * full / rate + (n_train + n_val) * DECODE_SECONDS)
    if not _train_value(train, "cache_features"):
        return naive, naive, 0.0
    stop = frozen_stop(
        backbone, mode, int(_train_value(train, "unfreeze")), _train_value(train, "unfreeze_unit")
    )
    prefix = sum(macs[:stop])
    tail = full - prefix
    fill = 0.0
    if not prefix_shared:
        images = variants * n_train + n_val
        fill = images * (prefix / rate + DECODE_SECONDS)
    per_epoch = (3 * n_train + n_val) * tail / rate + EPOCH_OVERHEAD_SECONDS
    return fill + epochs * per_epoch, naive, fill


def _pretrain_cost(spec: PretrainSpec, images: int, threads: int = 2) -> float:
    size = int(spec.config.get("input_size") or DEFAULT_SIZE)
    epochs = int(spec.config.get("epochs", 100))
    if spec.config.get("max_images"):
        images = min(images, int(spec.config["max_images"]))
    views = 2 if spec.kind == "unlabelled" else 1
    full = sum(stage_macs(spec.backbone, size))
    return epochs * images * views * (3 * full / _rate(spec.backbone, threads) + DECODE_SECONDS)


def _count_images(paths: list[str]) -> int:
    suffixes = {".png", ".jpg", ".jpeg", ".dcm", ".tif", ".tiff", ".bmp"}
    total = 0
    for root in paths:
        if Path(root).is_dir():
            total += sum(1 for p in Path(root).rglob("*") if p.suffix.lower() in suffixes)
    return total or 1000


def expand(cfg: ExperimentConfig, exp: Path, threads: int = 2) -> Plan:
    """Every run and pretraining run of `cfg`, in dependency order, with costs.

    `exp` is the experiment folder (paths of built datasets and pretraining runs live there);
    nothing is written.
    """
    exp = Path(exp).resolve()
    datasets: dict[str, dict[str, str | None]] = {}
    for name, ds in cfg.datasets.items():
        sources = exp / "sources" / name
        studies, labels, lesions = ds.studies, ds.labels, ds.lesions
        if ds.synth is not None:
            studies = sources / "studies"
            labels = studies / "labels.csv"
            lesions = lesions or studies / "lesions.csv"
        datasets[name] = {
            "manifest": str(dataset_manifest(exp, ds)),
            "studies": str(studies) if studies else None,
            "labels": str(labels) if labels else None,
            "ingest": str(sources / "ingest") if ds.manifest is None else None,
            "lesions": str(lesions) if lesions else None,
        }

    used_pretrain: dict[str, PretrainSpec] = {}
    for block in cfg.blocks:
        for backbone, sources in block.backbones:
            for source in sources:
                if source in cfg.pretrain and f"{source}-{backbone}" not in used_pretrain:
                    pc = cfg.pretrain[source]
                    data = (
                        [str(p) for p in pc.data]
                        if pc.synth is None
                        else [str(exp / "pretrain-data" / source)]
                    )
                    spec = PretrainSpec(
                        id=f"{source}-{backbone}",
                        name=source,
                        kind=pc.kind,
                        backbone=backbone,
                        method=pc.method,
                        data=data,
                        config=dict(pc.config),
                    )
                    images = int(pc.synth["images"]) if pc.synth else _count_images(data)
                    spec.cost = _pretrain_cost(spec, images, threads)
                    used_pretrain[spec.id] = spec

    several_targets = len({t for b in cfg.blocks for t in b.targets}) > 1
    several_datasets = len({b.dataset for b in cfg.blocks}) > 1
    runs: list[RunSpec] = []
    seen: set[str] = set()
    filled: set[str] = set()
    sizes: dict[tuple[str, str], tuple[int, int]] = {}
    for block in cfg.blocks:
        ds = cfg.datasets[block.dataset]
        folds: list[int | None] = list(range(cfg.folds)) if cfg.folds else [None]
        combos = itertools.product(
            block.targets,
            [(backbone, source) for backbone, sources in block.backbones for source in sources],
            block.rois,
            block.seeds,
            folds,
        )
        for target, (backbone, source), roi, seed, fold in combos:
            twin: str | None = None
            for mode in block.modes:
                parts = [f"p{block.procedure}", backbone, _slug(source),
                         mode, _roi_tag(roi)]  # fmt: skip
                if several_targets:
                    parts.append(_slug(target))
                if several_datasets:
                    parts.append(_slug(block.dataset))
                parts.append(f"f{fold}" if fold is not None else f"s{seed}")
                run_id = "-".join(parts)
                if run_id in seen:
                    continue
                seen.add(run_id)
                weights = source
                after: list[str] = []
                if source in cfg.pretrain:
                    weights = f"pretrain:{source}-{backbone}"
                    after.append(f"{source}-{backbone}")
                init_from = None
                if mode == "finetune" and block.finetune_from_frozen and twin:
                    init_from = twin
                    after.append(twin)
                manifest = (
                    fold_manifest(exp, block.dataset, fold)
                    if fold is not None
                    else Path(datasets[block.dataset]["manifest"] or "")
                )
                key = (str(manifest), target)
                if key not in sizes:
                    n_train, n_val = _split_sizes(manifest, ds, cfg, target)
                    if fold is not None:
                        pool = n_train + n_val
                        n_train = round(pool * (cfg.folds - 1) / cfg.folds)
                        n_val = pool - n_train
                    sizes[key] = (n_train, n_val)
                n_train, n_val = sizes[key]
                train = dict(block.train)
                # one prefix per images x trunk x preprocessing x draws
                group = "|".join(
                    str(x)
                    for x in (
                        manifest, target, backbone, weights, roi, seed,
                        train.get("input_size"), train.get("aug_variants"),
                        train.get("augmentation"), train.get("precision"),
                    )
                )  # fmt: skip
                cost, naive, _ = run_costs(
                    backbone, mode, source, train, n_train, n_val,
                    prefix_shared=group in filled, threads=threads,
                )  # fmt: skip
                filled.add(group)
                runs.append(
                    RunSpec(
                        id=run_id,
                        procedure=block.procedure,
                        dataset=block.dataset,
                        backbone=backbone,
                        weights=weights,
                        source=source,
                        mode=mode,
                        roi=roi,
                        target=target,
                        seed=seed,
                        fold=fold,
                        train=train,
                        init_from=init_from,
                        after=after,
                        manifest=str(manifest),
                        cost=round(cost, 1),
                        naive_cost=round(naive, 1),
                        prefix_group=group,
                    )
                )
                if mode == "frozen":
                    twin = run_id
    return Plan(cfg.name, datasets, list(used_pretrain.values()), runs)


def format_duration(seconds: float, sep: str = " ") -> str:
    """`seconds` as "12 s", "3.5 min" or "2.1 h" (`sep` goes between number and unit)."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}{sep}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}{sep}min"
    return f"{seconds / 3600:.1f}{sep}h"


def format_plan(plan: Plan, workers: int = 1) -> str:
    """The `--dry-run` table: one line per run with its estimated and naive cost."""
    head = f"experiment {plan.name}: {len(plan.pretrain)} pretraining runs, {len(plan.runs)} runs"
    lines = [head]
    if plan.pretrain:
        lines.append(f"{'pretraining run':<30} {'kind':<11} {'estimate':>10}")
        for p in plan.pretrain:
            lines.append(f"{p.id:<30} {p.kind:<11} {format_duration(p.cost):>10}")
    width = max([len(r.id) for r in plan.runs] + [len(p.id) for p in plan.pretrain] + [20])
    lines.append(f"{'run':<{width}} {'starts from':<22} {'estimate':>10} {'naive':>10}")
    for r in plan.runs:
        start = "frozen twin" if r.init_from else r.weights.removeprefix("pretrain:")
        cost, naive_cost = format_duration(r.cost), format_duration(r.naive_cost)
        lines.append(f"{r.id:<{width}} {start:<22} {cost:>10} {naive_cost:>10}")
    total, naive = plan.cost, plan.naive_cost
    ratio = f" ({naive / total:.0f}x less)" if total > 0 else ""
    lines.append(
        f"total estimate {format_duration(total)} on one worker{ratio}; naive (a full forward "
        f"and backward every epoch) {format_duration(naive)}"
    )
    if workers > 1:
        wall = format_duration(total / workers)
        lines.append(f"with {workers} workers: about {wall} of wall time")
    return "\n".join(lines)
