"""torchvision's state-dict keys and shapes for the paper's four backbones, written out from
torchvision's architecture definitions (torchvision/models/vgg.py, resnet.py, mobilenetv2.py)
independently of `lumbar.models`, so a layout mistake there cannot hide in both.

Each function returns the ordered list of (key, shape) an official `.pth` holds with the
1000-class head.
"""

from __future__ import annotations

Shape = tuple[int, ...]


def _bn(prefix: str, channels: int) -> list[tuple[str, Shape]]:
    return [
        (f"{prefix}.weight", (channels,)),
        (f"{prefix}.bias", (channels,)),
        (f"{prefix}.running_mean", (channels,)),
        (f"{prefix}.running_var", (channels,)),
        (f"{prefix}.num_batches_tracked", ()),
    ]


def _vgg(convs: list[tuple[int, int, int]]) -> list[tuple[str, Shape]]:
    keys: list[tuple[str, Shape]] = []
    for index, c_in, c_out in convs:
        keys += [
            (f"features.{index}.weight", (c_out, c_in, 3, 3)),
            (f"features.{index}.bias", (c_out,)),
        ]
    keys += [
        ("classifier.0.weight", (4096, 512 * 7 * 7)),
        ("classifier.0.bias", (4096,)),
        ("classifier.3.weight", (4096, 4096)),
        ("classifier.3.bias", (4096,)),
        ("classifier.6.weight", (1000, 4096)),
        ("classifier.6.bias", (1000,)),
    ]
    return keys


def vgg16() -> list[tuple[str, Shape]]:
    # features: conv at these indices (ReLU after each, max-pools at 4, 9, 16, 23, 30).
    return _vgg(
        [
            (0, 3, 64), (2, 64, 64),
            (5, 64, 128), (7, 128, 128),
            (10, 128, 256), (12, 256, 256), (14, 256, 256),
            (17, 256, 512), (19, 512, 512), (21, 512, 512),
            (24, 512, 512), (26, 512, 512), (28, 512, 512),
        ]
    )  # fmt: skip


def vgg19() -> list[tuple[str, Shape]]:
    # max-pools at 4, 9, 18, 27, 36.
    return _vgg(
        [
            (0, 3, 64), (2, 64, 64),
            (5, 64, 128), (7, 128, 128),
            (10, 128, 256), (12, 256, 256), (14, 256, 256), (16, 256, 256),
            (19, 256, 512), (21, 512, 512), (23, 512, 512), (25, 512, 512),
            (28, 512, 512), (30, 512, 512), (32, 512, 512), (34, 512, 512),
        ]
    )  # fmt: skip


def resnet50() -> list[tuple[str, Shape]]:
    keys: list[tuple[str, Shape]] = [("conv1.weight", (64, 3, 7, 7)), *_bn("bn1", 64)]
    c_in = 64
    for layer, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            keys += [
                (f"{p}.conv1.weight", (width, c_in, 1, 1)),
                *_bn(f"{p}.bn1", width),
                (f"{p}.conv2.weight", (width, width, 3, 3)),
                *_bn(f"{p}.bn2", width),
                (f"{p}.conv3.weight", (width * 4, width, 1, 1)),
                *_bn(f"{p}.bn3", width * 4),
            ]
            if b == 0:
                keys += [
                    (f"{p}.downsample.0.weight", (width * 4, c_in, 1, 1)),
                    *_bn(f"{p}.downsample.1", width * 4),
                ]
            c_in = width * 4
    keys += [("fc.weight", (1000, 2048)), ("fc.bias", (1000,))]
    return keys


def mobilenet_v2() -> list[tuple[str, Shape]]:
    keys: list[tuple[str, Shape]] = [
        ("features.0.0.weight", (32, 3, 3, 3)),
        *_bn("features.0.1", 32),
    ]
    # (expansion, out channels, repeats) per stage; strides do not change shapes.
    setting = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]
    index, c_in = 1, 32
    for t, c_out, n in setting:
        for _ in range(n):
            p = f"features.{index}.conv"
            hidden = c_in * t
            if t == 1:
                keys += [
                    (f"{p}.0.0.weight", (hidden, 1, 3, 3)),
                    *_bn(f"{p}.0.1", hidden),
                    (f"{p}.1.weight", (c_out, hidden, 1, 1)),
                    *_bn(f"{p}.2", c_out),
                ]
            else:
                keys += [
                    (f"{p}.0.0.weight", (hidden, c_in, 1, 1)),
                    *_bn(f"{p}.0.1", hidden),
                    (f"{p}.1.0.weight", (hidden, 1, 3, 3)),
                    *_bn(f"{p}.1.1", hidden),
                    (f"{p}.2.weight", (c_out, hidden, 1, 1)),
                    *_bn(f"{p}.3", c_out),
                ]
            index, c_in = index + 1, c_out
    keys += [("features.18.0.weight", (1280, 320, 1, 1)), *_bn("features.18.1", 1280)]
    keys += [("classifier.1.weight", (1000, 1280)), ("classifier.1.bias", (1000,))]
    return keys


REFERENCE = {
    "vgg16": vgg16,
    "vgg19": vgg19,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
}

#: Parameters with the 1000-class head, as torchvision documents them.
PARAMETERS = {
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "efficientnet_lite0": 4_652_008,  # the tensors of the package's file, summed
}

#: GFLOPs at 224x224 as torchvision's model tables give them (multiply-adds).
GFLOPS = {"vgg16": 15.47, "vgg19": 19.63, "resnet50": 4.09, "mobilenet_v2": 0.30}
