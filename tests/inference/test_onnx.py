"""`lumbar export --onnx`: the ONNX graph agrees with PyTorch under onnxruntime to 1e-4."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.tiny_run import make_tiny_run
from typer.testing import CliRunner

from lumbar.errors import UserError
from lumbar.explain import load_run
from lumbar.inference.onnx import export_onnx


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_lite0"])
def test_export_matches_pytorch(backbone: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    run = make_tiny_run(tmp_path / "run", backbone, size=64)
    report = export_onnx(run, tmp_path / "m.onnx")
    assert report["max_abs_diff"] <= 1e-4
    sidecar = json.loads((tmp_path / "m.onnx.json").read_text())
    assert sidecar["input"]["shape"] == ["batch", 3, 64, 64]
    assert sidecar["output"]["classes"] == ["normal", "abnormal"]
    # an independent check on a batch size the export never saw
    model, _ = load_run(run)
    x = torch.rand(5, 3, 64, 64) * 4 - 2
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)


def test_export_errors(tmp_path: Path) -> None:
    from lumbar.cli import app

    run = make_tiny_run(tmp_path / "run")
    with pytest.raises(UserError, match=r"\.onnx"):
        export_onnx(run, tmp_path / "m.bin")
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--onnx", str(tmp_path / "x.onnx")])
    assert isinstance(result.exception, UserError) and "not a run folder" in str(result.exception)
    ok = CliRunner().invoke(app, ["export", str(run), "--onnx", str(tmp_path / "ok.onnx")])
    assert ok.exit_code == 0 and "max |diff|" in ok.output
