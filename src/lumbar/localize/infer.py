"""Run the localiser network on windowed images: heat maps and offsets per image, batched."""

from __future__ import annotations

import numpy as np
import torch

from lumbar.localize.model import LocalizerNet
from lumbar.localize.preprocess import Letterbox, letterbox, to_network


def network_outputs(
    model: LocalizerNet, images01: list[np.ndarray], size: int, batch: int = 8
) -> list[tuple[np.ndarray, Letterbox]]:
    """Per image: (4, g, g) float32 (disc and L5-S1 probabilities, x/y offsets) and its box."""
    results: list[tuple[np.ndarray, Letterbox]] = []
    model.eval()
    for start in range(0, len(images01), batch):
        chunk = [letterbox(image, size) for image in images01[start : start + batch]]
        x = to_network(torch.stack([tensor[None] for tensor, _ in chunk]))
        with torch.inference_mode():
            out = model(x)
            out = torch.cat([torch.sigmoid(out[:, :2]), out[:, 2:]], dim=1)
        for (_, box), o in zip(chunk, out.numpy(), strict=True):
            results.append((o.astype(np.float32), box))
    return results
