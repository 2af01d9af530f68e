"""Config writer for the experiment tests (the manifest: `tiny_run.write_learnable_manifest`)."""

from __future__ import annotations

from pathlib import Path


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
