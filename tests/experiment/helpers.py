"""Tiny data for the experiment tests: a learnable 32 px manifest and config writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32


def write_manifest(folder: Path, patients: int = 16, per_patient: int = 3) -> Path:
    """32x32 images, abnormal discs carry a bright blob; split by patient 10/3/3."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,patient_id,level,disc_state,split"]
    levels = ["L3-L4", "L4-L5", "L5-S1"]
    for p in range(patients):
        split = "train" if p < patients * 5 // 8 else ("val" if p < patients * 13 // 16 else "test")
        for k in range(per_patient):
            grade = int((p + k) % 4)
            pixels = rng.integers(0, 60, size=(SIZE, SIZE)).astype(np.uint8)
            if grade > 0:
                pixels[8:20, 10:22] += np.uint8(120 + 20 * grade)
            name = f"p{p:02d}_{k}.png"
            Image.fromarray(pixels).save(folder / name)
            lines.append(f"{name},P{p:02d},{levels[k]},{grade},{split}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
