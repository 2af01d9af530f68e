"""A tiny run folder (config.json + checkpoint.pt) built without the training code, for the
explain / predict / serve / export tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lumbar.data.preprocessing import Preprocessing
from lumbar.models import RUN_CONFIG, WeightSource, build_classifier, save_checkpoint


def make_tiny_run(
    run_dir: Path,
    backbone: str = "mobilenet_v2",
    *,
    size: int = 64,
    roi: str = "none",
    seed: int = 0,
    num_classes: int = 2,
) -> Path:
    """A randomly initialised classifier at `size` x `size` input, saved as a run folder."""
    torch.manual_seed(seed)
    prep = Preprocessing(input_size=(size, size))
    source = WeightSource("scratch", backbone, prep, None, "scratch")
    model = build_classifier(backbone, num_classes, source, hidden=16).eval()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run_dir, model, epoch=1)
    names = ["normal", "abnormal"] if num_classes == 2 else [f"c{i}" for i in range(num_classes)]
    config = {
        **model.config(),
        "target": "disc_abnormal" if num_classes == 2 else "disc_state",
        "class_names": names,
        "roi": roi,
    }
    (run_dir / RUN_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return run_dir
