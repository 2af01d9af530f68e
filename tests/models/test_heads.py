"""The paper's classifier head, and the frozen / fine-tuning modes built on it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lumbar.errors import UserError
from lumbar.models import (
    Classifier,
    ClassifierHead,
    build_classifier,
    freeze_backbone,
    list_backbones,
    trainable_parameters,
    unfreeze_last,
)

# Conv layers per backbone (units of unfreeze_last(unit="layer")) and blocks (unit="block").
LAYERS = {"vgg16": 13, "vgg19": 16, "resnet50": 53, "mobilenet_v2": 52, "efficientnet_lite0": 49}
BLOCKS = {"vgg16": 5, "vgg19": 5, "resnet50": 17, "mobilenet_v2": 19, "efficientnet_lite0": 18}


@pytest.fixture(scope="module")
def classifiers() -> dict[str, Classifier]:
    """One scratch classifier per backbone, built once (VGG's trunk alone is 15-20 M params)."""
    torch.manual_seed(0)
    return {name: build_classifier(name, 2, "scratch") for name in list_backbones()}


@pytest.mark.parametrize(
    ("kind", "hidden", "expected"),
    [
        ("pool", 256, ["fc.weight", "fc.bias", "out.weight", "out.bias"]),
        ("pool", 0, ["out.weight", "out.bias"]),
        ("flatten", 8, ["fc.weight", "fc.bias", "out.weight", "out.bias"]),
    ],
)
def test_head_layout(kind: str, hidden: int, expected: list[str]) -> None:
    head = ClassifierHead(512, 3, kind=kind, grid=(7, 7), hidden=hidden)
    assert list(head.state_dict()) == expected
    assert head(torch.randn(2, 512, 7, 7)).shape == (2, 3)
    if kind == "flatten":
        assert head.fc.in_features == 512 * 7 * 7  # Keras' Flatten of block5_pool
        assert head(torch.randn(2, 512, 9, 9)).shape == (2, 3)  # other sizes pool to 7x7
    assert head.dropout.p == 0.2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "max"}, "head kind must be one of pool, flatten, got 'max'"),
        ({"hidden": -1}, "hidden must be 0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_head_validates_its_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClassifierHead(512, 2, **kwargs)


@pytest.mark.parametrize("name", list_backbones())
def test_classifier_forward_and_config(name: str, classifiers: dict[str, Classifier]) -> None:
    model = classifiers[name]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 2)
    config = model.config()
    assert config["backbone"] == name
    assert config["dropout"] == 0.2
    assert config["preprocessing"] == model.preprocessing.to_dict()
    assert all(k.startswith(("backbone.", "head.")) for k in model.state_dict())
    assert isinstance(model.last_conv, nn.Conv2d)
    assert model.last_conv.out_channels == model.spec.feature_dim
    assert model.feature_layer is model.get_submodule(f"backbone.{model.spec.feature_layer}")


@pytest.mark.parametrize("name", list_backbones())
def test_freeze_backbone_trains_only_the_head(
    name: str, classifiers: dict[str, Classifier]
) -> None:
    model = freeze_backbone(classifiers[name]).train()
    trainable = {id(p) for p in trainable_parameters(model)}
    assert trainable == {id(p) for p in model.head.parameters()}
    assert model.num_frozen_stages() == len(model.stages())
    assert not any(m.training for m in model.backbone.modules())  # frozen = inference mode
    assert model.head.training


@pytest.mark.parametrize("unit", ["layer", "block"])
@pytest.mark.parametrize("name", list_backbones())
def test_unfreeze_last(name: str, unit: str, classifiers: dict[str, Classifier]) -> None:
    model = classifiers[name]
    total = (LAYERS if unit == "layer" else BLOCKS)[name]
    names = unfreeze_last(model, 2, unit=unit)
    assert len(names) == 2
    trainable_convs = [
        n for n, m in model.backbone.named_modules()
        if isinstance(m, nn.Conv2d) and m.weight.requires_grad
    ]  # fmt: skip
    if unit == "layer":
        assert trainable_convs == names
    else:
        blocks = model.backbone.blocks()
        assert names == [n for n, _ in blocks][-2:]
        expected = {id(p) for _, mods in blocks[-2:] for m in mods for p in m.parameters()}
        assert {id(p) for p in trainable_parameters(model.backbone)} == expected
    bn = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not bn or bn[-1].weight.requires_grad  # a conv's norm layer trains with it
    assert 0 < model.num_frozen_stages() < len(model.stages())
    with pytest.raises(UserError, match=f"between 0 and {total}"):
        unfreeze_last(model, total + 1, unit=unit)
    assert unfreeze_last(model, total, unit=unit)  # everything
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert unfreeze_last(model, 0, unit=unit) == []


def test_vgg16_last_block_is_its_three_last_convolutions(
    classifiers: dict[str, Classifier],
) -> None:
    model = classifiers["vgg16"]
    assert unfreeze_last(model, 1, unit="block") == ["block5"]
    trainable = sorted(
        {n.rsplit(".", 1)[0] for n, p in model.backbone.named_parameters() if p.requires_grad}
    )
    assert trainable == ["features.24", "features.26", "features.28"]
    assert unfreeze_last(model, 2) == ["features.26", "features.28"]


def test_frozen_batchnorm_keeps_its_statistics_in_training(
    classifiers: dict[str, Classifier],
) -> None:
    model = classifiers["resnet50"]
    unfreeze_last(model, 1, unit="block")  # layer4.2 trains; layer4.1 is frozen
    model.train()
    frozen_bn, trained_bn = model.backbone.layer4[1].bn1, model.backbone.layer4[2].bn1
    before = frozen_bn.running_mean.clone(), trained_bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert not frozen_bn.training and torch.equal(frozen_bn.running_mean, before[0])
    assert trained_bn.training and not torch.equal(trained_bn.running_mean, before[1])


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_cached_prefix_gives_the_same_logits(name: str, classifiers: dict[str, Classifier]) -> None:
    """Cache the frozen prefix once, train the tail: same result as the whole network, also in
    training mode (frozen stochastic depth and BatchNorm are in inference mode)."""
    model = classifiers[name]
    unfreeze_last(model, 3, unit="block")
    n = model.num_frozen_stages()
    x = torch.randn(2, 3, 64, 64)
    model.train()
    model.head.dropout.p = 0.0  # only the head is random here; compare deterministically
    with torch.no_grad():
        cached = model.forward_stages(x, 0, n)
        torch.manual_seed(0)
        tail = model.forward_tail(cached, n)
        torch.manual_seed(0)
        whole = model(x)
    model.head.dropout.p = 0.2
    torch.testing.assert_close(tail, whole)


def test_build_classifier_with_imagenet_efficientnet() -> None:
    model = build_classifier("efficientnet_lite0", 4, "imagenet", head="pool", hidden=0)
    assert model.weight_source.kind == "imagenet"
    assert model.backbone.load_report.loaded == 294  # every trunk tensor; head is new
    assert isinstance(model.head.out, nn.Linear) and model.head.out.out_features == 4
    assert model.preprocessing.mean == (127.0, 127.0, 127.0)


def test_frozen_norm_statistics_do_not_move_while_scale_and_shift_learn():
    import torch

    from lumbar.models import build_classifier, freeze_norm_statistics, unfreeze_last

    model = build_classifier("mobilenet_v2", 2, "scratch")
    unfreeze_last(model, 1, unit="block")
    freeze_norm_statistics(model)
    model.train()
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    trainable = [m for m in norms if m.weight.requires_grad]
    assert trainable and all(not m.training for m in norms)
    before = [m.running_mean.clone() for m in trainable]
    model(torch.randn(2, 3, 64, 64) * 5 + 3).sum().backward()
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, trainable, strict=True))
    assert all(m.weight.grad is not None for m in trainable)
    freeze_norm_statistics(model, False)
    assert all(m.training for m in trainable)
