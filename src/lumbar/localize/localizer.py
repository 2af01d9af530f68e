"""The loaded localiser: weights plus decoding, applied to batches of sagittal images.

Weights are fp16 safetensors whose header carries the decoding fitted on out-of-fold outputs
(thresholds, isotonic confidence maps) and the training settings; the bundled file ships in
the package (weights/localizer.safetensors), so loading it needs no network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from lumbar.errors import UserError
from lumbar.files import write_json_atomic
from lumbar.localize.decode import Decoding, Disc, decode, image_context
from lumbar.localize.infer import network_outputs
from lumbar.localize.model import LocalizerNet
from lumbar.localize.preprocess import INPUT_SIZE, window

WEIGHTS_FILE = "localizer.safetensors"
#: Beside the weights: thresholds and confidence maps fitted on out-of-fold outputs (a small
#: file, so refitting them does not re-commit the weights).
DECODING_FILE = "decoding.json"


def bundled_weights() -> Path:
    """The weights file shipped inside the package."""
    return Path(str(resources.files("lumbar.localize") / "weights" / WEIGHTS_FILE))


def _weights_path(model: Path | None) -> Path:
    if model is None:
        return bundled_weights()
    model = Path(model)
    path = model / WEIGHTS_FILE if model.is_dir() else model
    if not path.is_file():
        raise UserError(
            f"no localiser weights at {model.name}: give a run folder of `lumbar localize "
            f"train` (with {WEIGHTS_FILE}) or the .safetensors file",
            option="model",
        )
    return path


def read_decoding(path: Path) -> Decoding:
    """The decoding stored beside a weights file; the untuned defaults when there is none."""
    if not path.is_file():
        return Decoding()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path.name}: {err}".splitlines()[0]) from None
    known = {f.name for f in fields(Decoding)}
    return Decoding(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    )


def write_decoding(decoding: Decoding, path: Path) -> None:
    """Store a fitted decoding as JSON (atomically)."""
    write_json_atomic(path, asdict(decoding))


class Localizer:
    """A disc localiser: the network loaded once, `find` applied to any number of images."""

    def __init__(self, net: LocalizerNet, decoding: Decoding, meta: dict[str, object]):
        self.net = net.eval()
        self.decoding = decoding
        self.meta = meta
        self.input_size = int(meta.get("input_size", INPUT_SIZE))  # type: ignore[call-overload]

    def find(
        self,
        images: list[np.ndarray],
        spacing_mm: list[tuple[float, float] | None] | None = None,
        batch: int = 8,
    ) -> list[list[Disc]]:
        """Discs of each image, top to bottom, in that image's pixels.

        Args:
            images: 2D gray (or RGB) arrays, any size and value range.
            spacing_mm: per image (row, column) pixel spacing when known; it lets two maxima
                closer than decode.MIN_DISC_GAP_MM be merged as one disc.
        """
        spacings = list(spacing_mm) if spacing_mm is not None else [None] * len(images)
        if len(spacings) != len(images):
            raise ValueError("one spacing (or None) per image")
        windowed = [window(i) for i in images]
        outputs = network_outputs(self.net, windowed, self.input_size, batch)
        found = []
        for (output, box), spacing, image in zip(outputs, spacings, windowed, strict=True):
            min_gap, height = image_context(image.shape, spacing)
            found.append(decode(output, box, self.decoding, min_gap, height))
        return found


def load_localizer(model: Path | None = None) -> Localizer:
    """The bundled localiser (`model` None), or a `lumbar localize train` run's / a file's.

    Raises:
        UserError: no weights there, or a file that is not a localiser's.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = _weights_path(model)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state = load_file(str(path), device="cpu")
        meta = json.loads(header.get("lumbar", "{}"))
    except Exception as err:  # safetensors raises several types for a damaged file
        raise UserError(
            f"cannot read localiser weights {path.name}: {err}".splitlines()[0]
        ) from None
    net = LocalizerNet()
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    except RuntimeError:
        raise UserError(f"{path.name} does not hold disc localiser weights") from None
    missing = [k for k in net.state_dict() if k not in state and "num_batches" not in k]
    if missing:
        raise UserError(f"{path.name} does not hold disc localiser weights ({missing[0]} missing)")
    decoding = read_decoding(path.parent / DECODING_FILE)
    settings = meta.get("settings", {})
    info = {"input_size": settings.get("input_size", INPUT_SIZE), **meta, "path": str(path)}
    return Localizer(net, decoding, info)


def bundled_summary() -> dict[str, str]:
    """One row for `lumbar models`: the bundled localiser's file, size and model card."""
    path = bundled_weights()
    size = f"{path.stat().st_size / 2**20:.1f} MB" if path.is_file() else "missing"
    return {
        "name": "disc localiser (sagittal)",
        "command": "lumbar localize",
        "file": str(path),
        "size": size,
        "card": str(path.parent / "MODEL_CARD.md"),
    }


@cache
def default_localizer() -> Localizer:
    """The bundled localiser, loaded on first use and kept for the process."""
    return load_localizer(None)
