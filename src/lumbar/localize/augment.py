"""Batch augmentation for the localiser: what differs between scanners, protocols and patients.

Geometry (one affine warp per image, applied to pixels and disc centres alike): scale 0.6-1.6,
rotation +-20 degrees, shifts that cut the sacrum or show more thoracic levels, horizontal
flips (images facing left or right). Intensity: random tissue-contrast curves (some
non-monotone, a T1 <-> T2-like swap of tissue order), gamma, brightness/contrast, a smooth bias
field, blur and noise. All in torch on the whole batch: cheap beside the network.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def random_affines(n: int, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """(n, 2, 3) maps from output to source coordinates, both normalised to [-1, 1]."""
    out = np.zeros((n, 2, 3))
    for i in range(n):
        zoom = math.exp(rng.uniform(math.log(0.6), math.log(1.6)) * strength)
        angle = math.radians(rng.uniform(-20, 20) * strength)
        flip = -1.0 if rng.random() < 0.5 else 1.0
        c, s = math.cos(angle), math.sin(angle)
        a = np.array([[c * flip, -s], [s * flip, c]]) / zoom
        shift = np.array([rng.uniform(-0.25, 0.25), rng.uniform(-0.35, 0.35)]) * strength
        out[i, :, :2] = a
        out[i, :, 2] = shift
    return out


def warp(images: torch.Tensor, affines: np.ndarray, size: int) -> torch.Tensor:
    """Warp (N, 1, H, W) square images to (N, 1, size, size) through output->source affines."""
    theta = torch.as_tensor(affines, dtype=torch.float32)
    grid = F.affine_grid(theta, [images.shape[0], 1, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_points(points: np.ndarray, affine: np.ndarray, src_size: int, size: int) -> np.ndarray:
    """Source pixel centres (N, 2) to output pixel centres under one output->source affine."""
    if len(points) == 0:
        return points.reshape(0, 2)
    src = (2 * points + 1) / src_size - 1
    a, t = affine[:, :2], affine[:, 2]
    out = np.linalg.solve(a, (src - t).T).T
    return ((out + 1) * size - 1) / 2


def _smooth_field(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    small = torch.as_tensor(rng.standard_normal((n, 1, 3, 3)), dtype=torch.float32)
    return F.interpolate(small, size=(size, size), mode="bicubic", align_corners=True)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, round(2 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def intensity(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Per-image contrast curve, gamma, bias field, blur and noise on [0, 1] images."""
    n, _, size, _ = x.shape
    out = []
    bias = _smooth_field(n, size, rng)
    for i in range(n):
        img = x[i : i + 1]
        body = img > 0.02  # letterbox and air stay dark whatever the curve
        if rng.random() < 0.5:  # random tissue-contrast curve through (0, 0)
            knots = rng.uniform(0.05, 1.0, 5)
            if rng.random() < 0.5:
                knots.sort()
            ys = torch.as_tensor(np.concatenate([[0.0], knots]), dtype=torch.float32)
            pos = img.clamp(0, 1) * 5
            lo = pos.floor().clamp(max=4).long()
            frac = pos - lo
            curve = ys[lo] * (1 - frac) + ys[lo + 1] * frac
            img = torch.where(body, curve, img)
        img = img.clamp(0, 1) ** math.exp(rng.uniform(-0.5, 0.5))
        img = img * math.exp(rng.uniform(-0.3, 0.3)) + rng.uniform(-0.05, 0.05)
        img = img * torch.exp(bias[i : i + 1] * rng.uniform(0, 0.35))
        if rng.random() < 0.3:
            img = _blur(img, rng.uniform(0.5, 1.5))
        img = img + torch.randn_like(img) * rng.uniform(0, 0.06)
        out.append(img.clamp(0, 1))
    return torch.cat(out)
