"""The settings of a `lumbar train` run: `TrainConfig`, with the paper's defaults, read from
options and a YAML file."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lumbar.data.augment import parse_augmentation
from lumbar.data.targets import get_target
from lumbar.errors import UserError
from lumbar.models import list_backbones

__all__ = [
    "MODES",
    "PRECISIONS",
    "RECIPES",
    "WEIGHT_DECAYS",
    "TrainConfig",
    "load_config_file",
]

MODES = ("frozen", "finetune")
PRECISIONS = ("auto", "fp32", "bf16")
#: "paper": the published head and settings (dense 256 + dropout 0.2, brightness and flips,
#: no weight decay), bit for bit as before the option existed. "regularized": what beat it on
#: real SPIDER discs (issue 16): a linear head on standardised pooled features, weight decay
#: chosen on the validation split, flips only, class balance.
RECIPES = ("paper", "regularized")
#: Weight decays `--recipe regularized` tries, keeping the lowest validation loss.
WEIGHT_DECAYS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
#: What each recipe fills in for the settings left unset (None).
_RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {
        "hidden": 256,
        "dropout": 0.2,
        "augmentation": "paper",
        "standardize": False,
        "weight_decay": 0.0,
    },
    "regularized": {
        "hidden": 0,
        "dropout": 0.0,
        "augmentation": "hflip",
        "standardize": True,
        "weight_decay": None,  # chosen on the validation split (`WEIGHT_DECAYS`)
    },
}


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
        recipe: "paper" (the published settings) or "regularized" (see `RECIPES`); it fills
            in hidden, dropout, augmentation, standardize and weight_decay when they are None.
        head, hidden, dropout: the classifier (`ClassifierHead`).
        standardize: standardise the pooled features in the head, with the training split's
            mean and standard deviation.
        weight_decay: Adam's L2 penalty; None under "regularized": the one of
            `WEIGHT_DECAYS` with the lowest validation loss.
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
    recipe: str = "paper"
    head: str = "pool"
    hidden: int | None = None
    dropout: float | None = None
    standardize: bool | None = None
    weight_decay: float | None = None
    epochs: int | None = None
    batch_size: int = 64
    lr: float | None = None
    augmentation: str | None = None
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
        if cfg.recipe not in RECIPES:
            raise UserError(
                f"recipe must be {' or '.join(RECIPES)}, got {cfg.recipe!r}", option="recipe"
            )
        for name, value in _RECIPE_DEFAULTS[cfg.recipe].items():
            if getattr(cfg, name) is None:
                setattr(cfg, name, value)
        if cfg.mode not in MODES:
            raise UserError(f"mode must be frozen or finetune, got {cfg.mode!r}", option="mode")
        if cfg.bn_stats not in ("frozen", "update"):
            raise UserError(
                f"bn_stats must be frozen or update, got {cfg.bn_stats!r}", option="bn_stats"
            )
        if cfg.backbone not in list_backbones():
            raise UserError(
                f"unknown backbone {cfg.backbone!r}; choose one of {', '.join(list_backbones())}",
                option="backbone",
            )
        get_target(cfg.target)
        scratch = str(cfg.weights) == "scratch"
        if cfg.epochs is None:
            cfg.epochs = 100 if scratch else 50
        if cfg.lr is None:
            cfg.lr = 1e-3 if cfg.mode == "frozen" and not scratch else 1e-5
        checks = [
            ("epochs", cfg.epochs >= 1, f"at least 1, got {cfg.epochs}"),
            ("batch_size", cfg.batch_size >= 1, f"at least 1, got {cfg.batch_size}"),
            ("lr", cfg.lr > 0 and math.isfinite(cfg.lr), f"positive, got {cfg.lr}"),
            ("aug_variants", cfg.aug_variants >= 1, f"at least 1, got {cfg.aug_variants}"),
            (
                "weight_decay",
                cfg.weight_decay is None or cfg.weight_decay >= 0,
                f"0 or more, got {cfg.weight_decay}",
            ),
            ("early_stop", cfg.early_stop >= 0, f"0 (off) or more, got {cfg.early_stop}"),
            ("unfreeze", cfg.unfreeze >= 0, f"0 or more, got {cfg.unfreeze}"),
            (
                "unfreeze_unit",
                cfg.unfreeze_unit in ("block", "layer"),
                f"block or layer, got {cfg.unfreeze_unit!r}",
            ),
            (
                "precision",
                cfg.precision in PRECISIONS,
                f"one of {', '.join(PRECISIONS)}, got {cfg.precision!r}",
            ),
            (
                "input_size",
                cfg.input_size is None or cfg.input_size >= 16,
                f"at least 16 pixels, got {cfg.input_size}",
            ),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise UserError(f"{name} must be {rule}", option=name)
        try:
            parse_augmentation(str(cfg.augmentation))
        except ValueError as err:
            raise UserError(str(err)) from None
        return cfg

    @classmethod
    def from_options(
        cls, config_file: Path | None = None, *, resume: bool = False, **options: Any
    ) -> TrainConfig:
        """A run's settings from a YAML (or JSON) file of fields, with `options` over it.

        Options that are None are not given: the file's value, else the default, holds. A
        new run needs a manifest; a resumed run takes its settings from its run folder, so it
        needs none (see `train`).

        Raises:
            UserError: an unreadable config file, unknown keys, or no manifest for a new run.
        """
        values: dict[str, Any] = load_config_file(config_file) if config_file is not None else {}
        values.update(
            {k: str(v) if isinstance(v, Path) else v for k, v in options.items() if v is not None}
        )
        if "manifest" in values:
            values["manifest"] = str(values["manifest"])
        elif resume:
            values["manifest"] = ""
        else:
            raise UserError(
                "a manifest is required (or a config file with manifest:)", option="manifest"
            )
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UserError(f"unknown training setting(s) {', '.join(unknown)}")
        return cls(**values)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config file of `TrainConfig` fields; unknown keys are an error.

    Raises:
        UserError: unreadable file, not a mapping, or unknown keys (listing the known ones).
    """

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
