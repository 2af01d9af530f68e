"""Helpers for a small but real experiment folder: tiny runs actually trained with
`lumbar.train`, laid out as `lumbar experiment` writes them (plan.json, runs/<id>/ with
spec.json, DONE, run.log)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.tiny_run import SIZE, write_learnable_manifest

LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


def write_manifest(folder: Path) -> Path:
    """32x32 axial 'discs' at five levels: abnormal ones carry a bright blob; patient-level
    split 10/3/3."""
    return write_learnable_manifest(
        folder, 16, LEVELS, view="axial_t2", blob=(10, 22, 12, 22), brightness=110
    )


def spec(backbone: str, mode: str, roi: str, seed: int, procedure: int = 1) -> dict:
    """A RunSpec as `lumbar experiment` plans it."""
    return {
        "id": f"p{procedure}-{backbone}-imagenet-{mode}-{roi}-s{seed}",
        "procedure": procedure,
        "dataset": "main",
        "backbone": backbone,
        "weights": "imagenet",
        "source": "imagenet",
        "mode": mode,
        "roi": roi,
        "target": "disc_abnormal",
        "seed": seed,
        "fold": None,
        "train": {"epochs": 2, "input_size": SIZE},
        "cost": 1.0,
    }


def train_run(exp: Path, manifest: Path, run: dict) -> None:
    """Train one tiny run into EXP/runs/<id> and mark it DONE, like the runner."""
    from lumbar.train import TrainConfig, train

    folder = exp / "runs" / run["id"]
    config = TrainConfig(
        manifest=str(manifest), backbone=run["backbone"], weights=run["weights"],
        mode=run["mode"], roi=run["roi"], seed=run["seed"], epochs=2, batch_size=16,
        input_size=SIZE, hidden=16, threads=1, lr=1e-3,
    )  # fmt: skip
    train(config, folder, progress=False)
    (folder / "spec.json").write_text(json.dumps(run, indent=2))
    (folder / "run.log").write_text("kept epoch 2\n")
    (folder / "DONE").write_text("2026-01-01T00:00:00\n")


def write_plan(exp: Path, manifest: Path, runs: list[dict]) -> None:
    plan = {
        "name": exp.name,
        "created": "2026-01-01T00:00:00",
        "datasets": {
            "main": {
                "manifest": str(manifest),
                "studies": None,
                "labels": None,
                "ingest": None,
                "lesions": None,
            }
        },
        "pretrain": [],
        "runs": runs,
    }
    (exp / "plan.json").write_text(json.dumps(plan, indent=2))
    (exp / "experiment.yaml").write_text("name: tiny\n# <script>alert(1)</script>\n")


TRAINED = [
    spec("efficientnet_lite0", "frozen", "none", 0),
    spec("efficientnet_lite0", "frozen", "none", 1),
    spec("efficientnet_lite0", "finetune", "none", 0),
    spec("efficientnet_lite0", "finetune", "grid", 0),
]
NOT_RUN = spec("efficientnet_lite0", "finetune", "grid", 1)
FAILED = spec("efficientnet_lite0", "frozen", "grid", 0)
