"""Using a trained run: `lumbar predict` (one study -> per-disc grades with heat maps),
`lumbar serve` (the same over HTTP) and `lumbar export` (ONNX).

`predict` holds the `Predictor`; `serve` (FastAPI) and `onnx` (onnxruntime) are imported only
by those who use them.
"""
