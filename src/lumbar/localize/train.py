"""Training of the disc localiser: targets, loss, the step loop, saving fp16 safetensors.

Each batch mixes SPIDER slices, phantom sagittal slices and negatives, warped and re-contrasted
on the fly (augment.py). Targets are CenterNet-style: a Gaussian per disc centre (sigma a tenth
of the local disc spacing) in channel 0, the L5-S1 disc alone in channel 1, sub-cell offsets at
each centre's cell; focal loss on the heat maps, L1 on the offsets.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lumbar.localize.augment import intensity, random_affines, warp, warp_points
from lumbar.localize.data import Sample
from lumbar.localize.model import STRIDE, LocalizerNet
from lumbar.localize.preprocess import INPUT_SIZE, letterbox, to_network

#: Side of the square each training image is letterboxed onto before augmentation.
CANVAS = 320
ANCHOR_LEVEL = "L5-S1"


@dataclass(frozen=True)
class TrainSettings:
    """What a localiser training run depends on (written to RUN/config.json)."""

    steps: int = 800
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    phantom_share: float = 0.15
    negative_share: float = 0.1
    input_size: int = INPUT_SIZE
    phantoms: int = 60
    negatives: int = 40


@dataclass
class Canvas:
    """Training images letterboxed onto CANVAS squares, with their centres in canvas pixels."""

    images: torch.Tensor  # (N, 1, CANVAS, CANVAS)
    points: list[np.ndarray]
    levels: list[tuple[str, ...]]
    kinds: list[str]


def build_canvas(samples: list[Sample]) -> Canvas:
    """Letterbox every sample once; augmentation then warps from these squares."""
    images, points = [], []
    for s in samples:
        tensor, box = letterbox(s.image, CANVAS)
        images.append(tensor[None])
        points.append(box.to_input(s.points) if len(s.points) else np.zeros((0, 2)))
    return Canvas(
        torch.stack(images), points, [s.levels for s in samples], [s.kind for s in samples]
    )


def local_spacing(points: np.ndarray) -> np.ndarray:
    """Per disc, the distance to its nearest neighbour along the list (NaN for a lone disc)."""
    if len(points) < 2:
        return np.full(len(points), np.nan)
    gaps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    before = np.concatenate([[np.inf], gaps])
    after = np.concatenate([gaps, [np.inf]])
    return np.minimum(before, after)


def make_targets(
    points: np.ndarray, levels: tuple[str, ...], size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heat maps (2, g, g), offsets (2, g, g) and offset mask (g, g) for input-pixel centres."""
    g = size // STRIDE
    heat = np.zeros((2, g, g), dtype=np.float32)
    offset = np.zeros((2, g, g), dtype=np.float32)
    mask = np.zeros((g, g), dtype=np.float32)
    spacing = local_spacing(points)
    yy, xx = np.mgrid[0:g, 0:g]
    for (x, y), level, gap in zip(points, levels, spacing, strict=True):
        cx, cy = (x + 0.5) / STRIDE - 0.5, (y + 0.5) / STRIDE - 0.5
        ix, iy = round(float(cx)), round(float(cy))
        if not (0 <= ix < g and 0 <= iy < g):
            continue
        sigma = float(np.clip(0.12 * gap / STRIDE, 0.7, 2.0)) if np.isfinite(gap) else 1.0
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        heat[0] = np.maximum(heat[0], blob)
        if level == ANCHOR_LEVEL:
            heat[1] = np.maximum(heat[1], blob)
        offset[:, iy, ix] = (cx - ix, cy - iy)
        mask[iy, ix] = 1.0
        heat[0, iy, ix] = 1.0
        if level == ANCHOR_LEVEL:
            heat[1, iy, ix] = 1.0
    return heat, offset, mask


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of centres."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def _batch(
    canvas: Canvas,
    pools: dict[str, np.ndarray],
    settings: TrainSettings,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw, warp and re-contrast one batch; its targets."""
    shares = {
        "negative": settings.negative_share if len(pools["negative"]) else 0.0,
        "phantom": settings.phantom_share if len(pools["phantom"]) else 0.0,
    }
    shares["spider"] = 1.0 - sum(shares.values())
    kinds = rng.choice(list(shares), size=settings.batch, p=list(shares.values()))
    index = np.array([rng.choice(pools[k]) for k in kinds])
    affines = random_affines(len(index), rng)
    size = settings.input_size
    images = intensity(warp(canvas.images[index], affines, size), rng)
    heats, offsets, masks = [], [], []
    for i, j in enumerate(index):
        pts = warp_points(canvas.points[j], affines[i], CANVAS, size)
        order = np.argsort(pts[:, 1]) if len(pts) else np.zeros(0, dtype=int)
        levels = tuple(canvas.levels[j][k] for k in order)
        h, o, m = make_targets(pts[order], levels, size)
        heats.append(h)
        offsets.append(o)
        masks.append(m)
    return (
        to_network(images),
        torch.from_numpy(np.stack(heats)),
        torch.from_numpy(np.stack(offsets)),
        torch.from_numpy(np.stack(masks)),
    )


def imagenet_state() -> dict[str, torch.Tensor]:
    """Lite0's ImageNet weights from the installed package (no network), hash-checked."""
    from lumbar.models.weights import load_state_dict_from_source, resolve_weights

    state = load_state_dict_from_source(resolve_weights("efficientnet_lite0", "imagenet"))
    assert state is not None
    return state


def train_localizer(
    samples: list[Sample],
    settings: TrainSettings,
    log: Callable[[str], None] = print,
) -> LocalizerNet:
    """Train from ImageNet weights for `settings.steps` steps; returns the model in eval mode."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    canvas = build_canvas(samples)
    pools = {
        k: np.array([i for i, kind in enumerate(canvas.kinds) if kind == k], dtype=int)
        for k in ("spider", "phantom", "negative")
    }
    model = LocalizerNet()
    model.load_imagenet(imagenet_state())
    frozen = model.frozen_modules()
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = max(1, settings.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, settings.steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * t))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_at)
    model.train()
    for module in frozen:
        module.eval()
    start = time.perf_counter()
    running = 0.0
    for step in range(settings.steps):
        x, heat, offset, mask = _batch(canvas, pools, settings, rng)
        out = model(x)
        loss_heat = focal_loss(out[:, :2], heat)
        m = mask[:, None]
        loss_off = (F.l1_loss(out[:, 2:] * m, offset * m, reduction="sum")) / m.sum().clamp(1.0)
        loss = loss_heat + loss_off
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
        if step % 25 == 0 or step == settings.steps - 1:
            elapsed = time.perf_counter() - start
            log(
                f"step {step + 1}/{settings.steps} loss {running:.3f} "
                f"({elapsed / (step + 1):.2f} s/step, {elapsed / 60:.1f} min)"
            )
    model.eval()
    return model


def save_weights(model: LocalizerNet, path: Path, metadata: dict[str, object]) -> None:
    """fp16 safetensors (BatchNorm counters dropped), `metadata` as JSON in its header."""
    from safetensors.torch import save_file

    from lumbar.files import atomic_path

    state = {
        k: v.detach().to(torch.float16).contiguous()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"lumbar": json.dumps(metadata)})


def settings_dict(settings: TrainSettings) -> dict[str, object]:
    """The settings as plain JSON values."""
    return asdict(settings)
