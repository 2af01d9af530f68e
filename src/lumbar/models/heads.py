"""The paper's classifier on top of a backbone, and the freezing used by its two modes.

Al-kubaisi & Khamiss put a small classifier on the convolutional trunk: pooling or flattening,
a dense layer, dropout 0.2, and the output layer. "Frozen" training trains only that classifier
(`freeze_backbone`); fine-tuning also trains the last few layers of the trunk
(`unfreeze_last`). A frozen module always runs in inference mode (BatchNorm statistics and
stochastic depth fixed), as Keras does for non-trainable layers, so the frozen part of the
network is a fixed function: its outputs can be cached (`Classifier.num_frozen_stages`,
`Classifier.forward_stages`, `Classifier.forward_tail`).

Example:
    >>> model = build_classifier("vgg16", num_classes=2, weights="imagenet", head="flatten")
    >>> unfreeze_last(model, 3)            # the three convolutions of block5
    >>> n = model.num_frozen_stages()      # cache model.forward_stages(x, 0, n) once ...
    >>> logits = model.forward_tail(cached, n)   # ... and train on the rest
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lumbar import runs
from lumbar.errors import UserError
from lumbar.models._registry import BackboneSpec, get_backbone_spec
from lumbar.models.factory import create_backbone, feature_grid
from lumbar.models.preprocessing import Preprocessing
from lumbar.models.weights import WeightSource, read_weights_file, resolve_weights

__all__ = [
    "HEAD_KINDS",
    "Classifier",
    "ClassifierHead",
    "build_classifier",
    "freeze_backbone",
    "load_classifier",
    "save_checkpoint",
    "trainable_parameters",
    "unfreeze_last",
]

HeadKind = Literal["pool", "flatten"]
HEAD_KINDS: tuple[str, ...] = ("pool", "flatten")
UNFREEZE_UNITS: tuple[str, ...] = ("layer", "block")
_BATCH_NORMS = nn.modules.batchnorm._BatchNorm  # layers with running statistics
_NORMS = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm)


class ClassifierHead(nn.Module):
    """Pool or flatten -> dense + ReLU -> dropout -> output logits (the paper's classifier).

    Args:
        in_channels: channels of the trunk's feature map.
        num_classes: output logits (2 for a binary target with softmax cross-entropy).
        kind: "pool" (global average, Keras' GlobalAveragePooling2D) or "flatten" (the whole
            `grid` x channels map, Keras' Flatten; the map is average-pooled to `grid` first, so
            other input sizes still fit).
        grid: (height, width) the map is flattened at, for `kind="flatten"`.
        hidden: units of the dense layer; 0 leaves it out (pool -> dropout -> output).
        dropout: dropout probability before the output layer (the paper's 0.2).
        standardize: subtract `feature_mean` and divide by `feature_scale` (buffers, set from
            the training features by `lumbar train --recipe regularized`) after pooling, so
            one learning rate and weight decay suit every feature; off in the paper's head.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        kind: HeadKind = "pool",
        grid: tuple[int, int] = (7, 7),
        hidden: int = 256,
        dropout: float = 0.2,
        standardize: bool = False,
    ):
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {', '.join(HEAD_KINDS)}, got {kind!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if hidden < 0:
            raise ValueError(f"hidden must be 0 (no dense layer) or more, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.kind = kind
        self.pool = nn.AdaptiveAvgPool2d(1 if kind == "pool" else tuple(grid))
        self.flatten = nn.Flatten(1)
        features = in_channels if kind == "pool" else in_channels * grid[0] * grid[1]
        self.standardize = standardize
        if standardize:
            self.register_buffer("feature_mean", torch.zeros(features))
            self.register_buffer("feature_scale", torch.ones(features))
        if hidden > 0:
            self.fc = nn.Linear(features, hidden)
            self.act = nn.ReLU(inplace=True)
            features = hidden
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.pool(x))
        if self.standardize:
            x = (x - self.feature_mean) / self.feature_scale
        if hasattr(self, "fc"):
            x = self.act(self.fc(x))
        return self.out(self.dropout(x))


class Classifier(nn.Module):
    """A backbone trunk and a `ClassifierHead`: logits = head(backbone.forward_features(x)).

    State-dict keys are "backbone.<torchvision key>" and "head.<key>", so a checkpoint of a
    Classifier is itself a weight source for its backbone.

    Attributes:
        backbone: the trunk (torchvision layout, built with `num_classes=0`).
        head: the classifier.
        spec: the backbone's registry entry (feature dim, last conv, ...).
        weight_source: where the trunk's weights came from; `.preprocessing` is the input the
            data loader must produce.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: ClassifierHead,
        *,
        spec: BackboneSpec,
        weight_source: WeightSource,
        options: dict[str, Any],
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.spec = spec
        self.weight_source = weight_source
        self._options = dict(options)
        # BatchNorm running statistics stay fixed in training mode (see `freeze_norm_statistics`)
        self.norm_stats_frozen = False

    @property
    def preprocessing(self) -> Preprocessing:
        """The input normalisation these weights expect (DESIGN.md: it belongs to the weights)."""
        return self.weight_source.preprocessing

    @property
    def last_conv(self) -> nn.Conv2d:
        """The trunk's last convolution (a Grad-CAM target)."""
        return self.backbone.get_submodule(self.spec.last_conv)

    @property
    def feature_layer(self) -> nn.Module:
        """The module whose output is the trunk's feature map (the usual Grad-CAM target)."""
        return self.backbone.get_submodule(self.spec.feature_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's feature map, (N, feature_dim, h, w)."""
        return self.backbone.forward_features(x)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The trunk as ordered (name, module) stages; applied in turn = `forward_features`."""
        return self.backbone.stages()

    def forward_stages(
        self, x: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Apply trunk stages `start` .. `stop - 1` to `x`."""
        for _, stage in self.stages()[start:stop]:
            x = stage(x)
        return x

    def forward_tail(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Logits from the output of the first `start` stages (e.g. a cached frozen prefix)."""
        return self.head(self.forward_stages(x, start))

    def num_frozen_stages(self) -> int:
        """How many leading trunk stages have no trainable parameter.

        Those stages run in inference mode and compute a fixed function of the input (for a
        given augmentation), so their output can be computed once and cached. The first stage
        after them has parameters, so it never modifies the cached tensor in place.
        """
        count = 0
        for _, stage in self.stages():
            if any(p.requires_grad for p in stage.parameters()):
                break
            count += 1
        return count

    def train(self, mode: bool = True) -> Classifier:
        """Set training mode, keeping every fully frozen module in inference mode.

        With `norm_stats_frozen`, every BatchNorm of the trunk also stays in inference mode:
        its scale and shift still learn, its running statistics do not move.
        """
        super().train(mode)
        if mode:
            for module in self.backbone.modules():
                params = list(module.parameters())
                fully_frozen = bool(params) and not any(p.requires_grad for p in params)
                fixed_stats = self.norm_stats_frozen and isinstance(module, _BATCH_NORMS)
                if fully_frozen or fixed_stats:
                    module.eval()
        return self

    def config(self) -> dict[str, Any]:
        """The keys a run's config.json needs so `load_classifier` can rebuild this model."""
        return {
            "backbone": self.spec.name,
            **self._options,
            "preprocessing": self.preprocessing.to_dict(),
            "weights": self.weight_source.to_config(),
        }


def build_classifier(
    backbone_name: str,
    num_classes: int,
    weights: str | Path | WeightSource = "imagenet",
    *,
    head: HeadKind = "pool",
    hidden: int = 256,
    dropout: float = 0.2,
    standardize: bool = False,
    **backbone_kwargs: Any,
) -> Classifier:
    """The paper's model: a registered backbone's trunk with `weights`, and a new classifier.

    Args:
        backbone_name: registry name (`list_backbones()`).
        num_classes: output logits.
        weights: "imagenet", "scratch", a weights file, a run folder, or a `WeightSource`.
        head: "pool" (global average) or "flatten" (the whole feature map).
        hidden: units of the dense layer (0: none).
        dropout: dropout before the output layer (0.2 in the paper).
        standardize: standardise the pooled features in the head (`ClassifierHead`).
        **backbone_kwargs: architecture options (e.g. `bn_momentum` for EfficientNet-Lite).

    Returns:
        A `Classifier` in training mode with every parameter trainable; call
        `freeze_backbone` or `unfreeze_last` for the paper's frozen / fine-tuning modes.

    Raises:
        UserError: unknown backbone or weights, unavailable ImageNet weights, weights that do
            not fit.
        ValueError: head options out of range.
    """
    spec = get_backbone_spec(backbone_name)
    source = (
        weights if isinstance(weights, WeightSource) else resolve_weights(backbone_name, weights)
    )
    grid = feature_grid(backbone_name, source.preprocessing.input_size)
    classifier_head = ClassifierHead(
        spec.feature_dim,
        num_classes,
        kind=head,
        grid=grid,
        hidden=hidden,
        dropout=dropout,
        standardize=standardize,
    )
    trunk = create_backbone(backbone_name, source, num_classes=0, **backbone_kwargs)
    options: dict[str, Any] = {
        "num_classes": num_classes, "head": head, "hidden": hidden, "dropout": dropout,
    }  # fmt: skip
    if standardize:  # only then, so the paper's config.json stays as it was
        options["standardize"] = True
    if backbone_kwargs:
        options["backbone_options"] = dict(backbone_kwargs)
    return Classifier(trunk, classifier_head, spec=spec, weight_source=source, options=options)


def freeze_backbone(model: Classifier) -> Classifier:
    """Freeze the whole trunk (the paper's "frozen" mode): only the head trains."""
    for param in model.backbone.parameters():
        param.requires_grad_(False)
    for param in model.head.parameters():
        param.requires_grad_(True)
    return model.train(model.training)


def _layer_units(backbone: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Conv and linear layers in forward order, each with the norm layer that follows it."""
    units: list[tuple[str, list[nn.Module]]] = []
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            units.append((name, [module]))
        elif isinstance(module, _NORMS) and units:
            units[-1][1].append(module)
    return units


def unfreeze_last(model: Classifier, k: int, *, unit: str = "layer") -> list[str]:
    """Freeze the trunk, then make its last `k` units trainable (the paper's fine-tuning).

    Args:
        model: a `Classifier`.
        k: how many units to unfreeze, counted from the output end; 0 is `freeze_backbone`.
        unit: "layer" (a convolution with its BatchNorm, as the paper counts "layers") or
            "block" (VGG's block1..block5, a ResNet bottleneck, a MobileNetV2 / EfficientNet
            inverted residual).

    Returns:
        The names of the unfrozen units, first to last.

    Raises:
        UserError: `k` is negative or larger than the trunk's number of units.
    """
    if unit not in UNFREEZE_UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNFREEZE_UNITS)}, got {unit!r}")
    units = _layer_units(model.backbone) if unit == "layer" else model.backbone.blocks()
    if not 0 <= k <= len(units):
        raise UserError(
            f"unfreeze must be between 0 and {len(units)} for {model.spec.name} "
            f"(its number of {unit}s), got {k}",
            option="unfreeze",
        )
    freeze_backbone(model)
    chosen = units[len(units) - k :] if k else []
    for _, modules in chosen:
        for module in modules:
            for param in module.parameters():
                param.requires_grad_(True)
    model.train(model.training)
    return [name for name, _ in chosen]


def freeze_norm_statistics(model: Classifier, frozen: bool = True) -> Classifier:
    """Keep the trunk's BatchNorm layers in inference mode while fine-tuning (or not).

    Keras' transfer-learning guidance, which the paper followed: unfrozen BatchNorm layers
    that update their statistics on a small, augmented training set (the paper's brightness
    range only darkens) drift from the statistics seen at validation and test time.
    """
    model.norm_stats_frozen = frozen
    return model.train(model.training)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimiser should get (those with `requires_grad`)."""
    return [p for p in model.parameters() if p.requires_grad]


def save_checkpoint(run_dir: Path, model: Classifier, **extra: Any) -> Path:
    """Write RUN/checkpoint.pt ({"model": state_dict, **extra}) atomically; return its path.

    The caller writes RUN/config.json including `model.config()` (see `lumbar.runs`).
    """
    return runs.save_checkpoint(run_dir, {"model": model.state_dict(), **extra})


def load_classifier(run_dir: Path) -> Classifier:
    """Rebuild the trained `Classifier` of a run folder (config.json + checkpoint.pt).

    Raises:
        UserError: not a run folder, a config without the classifier's keys, or a checkpoint
            that does not match its config.
    """
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir, require=("backbone", "num_classes", "preprocessing"))
    source = resolve_weights(config["backbone"], run_dir)
    model = build_classifier(
        config["backbone"],
        int(config["num_classes"]),
        WeightSource("scratch", source.backbone, source.preprocessing, run_dir, source.description),
        head=config.get("head", "pool"),
        hidden=int(config.get("hidden", 256)),
        dropout=float(config.get("dropout", 0.2)),
        standardize=bool(config.get("standardize", False)),
        **config.get("backbone_options", {}),
    )
    state = read_weights_file(run_dir / runs.CHECKPOINT)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise UserError(
            f"checkpoint of run {run_dir.name} does not match its {runs.CONFIG}: {first}"
        ) from None
    model.weight_source = source
    return model.eval()
