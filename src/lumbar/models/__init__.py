"""Backbones, their weight sources, and the paper's classifier head.

The four backbones of Al-kubaisi & Khamiss 2022 (VGG16, VGG19, ResNet50, MobileNetV2) plus
EfficientNet-Lite0, in plain PyTorch with torchvision's module layout and state-dict keys. Each
registers itself (`_registry.register_backbone`), declaring its feature channels, its last
convolution and its ImageNet weights with their preprocessing.

Example:
    >>> from lumbar.models import build_classifier, list_backbones, unfreeze_last
    >>> list_backbones()
    ['vgg16', 'vgg19', 'resnet50', 'mobilenet_v2', 'efficientnet_lite0']
    >>> model = build_classifier("efficientnet_lite0", num_classes=2, weights="imagenet")
    >>> model.preprocessing.mean
    (127.0, 127.0, 127.0)
"""

# Importing the family modules registers their backbones, in this order.
from lumbar.models import vgg, resnet, mobilenetv2, efficientnet_lite  # noqa: I001, F401
from lumbar.models._registry import (
    BackboneSpec,
    ImagenetWeights,
    get_backbone_spec,
    list_backbones,
    register_backbone,
)
from lumbar.models.factory import create_backbone, feature_grid
from lumbar.models.flops import backbone_gflops, count_macs
from lumbar.models.heads import (
    HEAD_KINDS,
    Classifier,
    ClassifierHead,
    build_classifier,
    freeze_backbone,
    freeze_norm_statistics,
    load_classifier,
    save_checkpoint,
    trainable_parameters,
    unfreeze_last,
)
from lumbar.models.weights import (
    LoadReport,
    WeightSource,
    download_imagenet_weights,
    imagenet_weights_available,
    imagenet_weights_path,
    resolve_weights,
    resolve_weights_at,
)

__all__ = [
    "HEAD_KINDS",
    "BackboneSpec",
    "Classifier",
    "ClassifierHead",
    "ImagenetWeights",
    "LoadReport",
    "WeightSource",
    "backbone_gflops",
    "build_classifier",
    "count_macs",
    "create_backbone",
    "download_imagenet_weights",
    "feature_grid",
    "freeze_backbone",
    "freeze_norm_statistics",
    "get_backbone_spec",
    "imagenet_weights_available",
    "imagenet_weights_path",
    "list_backbones",
    "load_classifier",
    "register_backbone",
    "resolve_weights",
    "resolve_weights_at",
    "save_checkpoint",
    "trainable_parameters",
    "unfreeze_last",
]
