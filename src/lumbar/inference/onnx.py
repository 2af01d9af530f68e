"""`lumbar export RUN --onnx FILE`: a run's classifier as ONNX, checked against onnxruntime.

The graph maps a normalised image batch `image` (N, C, H, W) float32 (the run's preprocessing:
size, channel order, mean/std, written to the `FILE.json` sidecar) to `logits` (N, classes);
the batch size is dynamic, the image size is the run's. After writing, the file is run with
onnxruntime on random and constant inputs and compared with PyTorch: an export whose largest
difference exceeds `atol` is removed and reported, never left looking usable.

Example:
    >>> report = export_onnx(Path("runs/effnet-finetune"), Path("effnet.onnx"))
    >>> report["max_abs_diff"] < 1e-4
    True
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lumbar.errors import UserError
from lumbar.explain import class_names, load_run
from lumbar.files import atomic_path, write_json_atomic

__all__ = ["check_onnx", "export_onnx"]

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17


def export_onnx(
    run_dir: Path, file: Path, *, opset: int = DEFAULT_OPSET, atol: float = 1e-4
) -> dict[str, Any]:
    """Write the run's model to `file` (+ `file.json`) and check it with onnxruntime.

    Returns:
        A report: file, opset, input shape, max_abs_diff, atol.

    Raises:
        UserError: the run cannot be loaded, the export fails, or onnxruntime disagrees with
            PyTorch by more than `atol` (the file is then removed).
    """
    model, config = load_run(Path(run_dir))
    model.eval()
    height, width = model.preprocessing.input_size
    channels = model.preprocessing.num_channels
    example = torch.zeros(1, channels, height, width)
    file = Path(file)
    if file.suffix.lower() != ".onnx":
        raise UserError(f"the ONNX file name must end in .onnx, got {file.name}", option="onnx")
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(file) as tmp, _quiet_export():
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,  # the TorchScript exporter needs no onnxscript dependency
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
            )
    except Exception as err:
        raise UserError(f"ONNX export of run {Path(run_dir).name} failed: {err}") from None
    diff = check_onnx(model, file)
    if not diff <= atol:
        file.unlink(missing_ok=True)
        raise UserError(
            f"onnxruntime output differs from PyTorch by {diff:.2e} (> {atol:g}); export removed"
        )
    report = {
        "file": file.name,
        "opset": opset,
        "input": {"name": INPUT_NAME, "shape": ["batch", channels, height, width]},
        "output": {"name": OUTPUT_NAME, "classes": class_names(config)},
        "preprocessing": model.preprocessing.to_dict(),
        "backbone": config.get("backbone"),
        "target": config.get("target"),
        "roi": config.get("roi", "none"),
        "max_abs_diff": float(diff),
        "atol": atol,
    }
    write_json_atomic(file.with_name(file.name + ".json"), report)
    return report


def check_onnx(model: torch.nn.Module, file: Path, *, seed: int = 0) -> float:
    """Largest |logit difference| between PyTorch and onnxruntime over test batches.

    The batches are random normalised-range images (batch of 3, so the dynamic batch axis is
    exercised) and a constant image.
    """
    import onnxruntime as ort

    preprocessing = model.preprocessing  # type: ignore[attr-defined]
    height, width = preprocessing.input_size
    channels = preprocessing.num_channels
    generator = torch.Generator().manual_seed(seed)
    batches = [
        torch.randn(3, channels, height, width, generator=generator),
        torch.zeros(1, channels, height, width),
    ]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for batch in batches:
            expected = model(batch).numpy()
            got = session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})[0]
            if got.shape != expected.shape:
                return float("inf")
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst


@contextlib.contextmanager
def _quiet_export() -> Any:
    """The exporter's tracer and deprecation warnings are not the user's concern."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
