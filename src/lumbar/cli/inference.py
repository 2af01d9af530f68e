"""`lumbar predict`, `export` and `serve` (`lumbar.inference`).

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def predict(
    study: Annotated[
        str,
        typer.Argument(
            help="Folder of one study's DICOM files, or a DICOMweb study URL "
            "(http://HOST/dicom-web/studies/UID)."
        ),
    ],
    model: Annotated[Path, typer.Option("--model", help="Run folder of `lumbar train`.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for prediction.json/.csv, summary.html and the heat maps."),
    ] = None,
    roi: Annotated[
        str | None,
        typer.Option(help="Crop override: grid, center:F or none (default: the run's crop)."),
    ] = None,
    layer: Annotated[
        str, typer.Option(help="Grad-CAM layer: features, last_conv, or a module path.")
    ] = "features",
    threads: Annotated[
        int, typer.Option(help="CPU threads for the model (0: PyTorch's default).")
    ] = 0,
    dicom_sr: Annotated[
        Path | None,
        typer.Option(
            "--dicom-sr",
            help="Folder for a DICOM SR (TID 1500) and an overlay Secondary Capture series.",
        ),
    ] = None,
    fhir: Annotated[
        Path | None, typer.Option("--fhir", help="File for a FHIR R4 DiagnosticReport (JSON).")
    ] = None,
    stow: Annotated[
        str | None,
        typer.Option(
            "--stow",
            help="DICOMweb root (http://HOST/dicom-web): store the SR and overlay series "
            "there, into the source study (STOW-RS).",
        ),
    ] = None,
    identity: Annotated[
        str,
        typer.Option(
            "--identity",
            help="research: SR/overlay/FHIR pseudonymised as `lumbar ingest` does; hospital: "
            "they carry the source study's own identifiers (for the hospital's own PACS).",
        ),
    ] = "research",
) -> None:
    """Predict each disc of one DICOM study, with class probabilities and Grad-CAM maps."""
    from lumbar.errors import UserError
    from lumbar.inference.predict import predict as predict_study
    from lumbar.structured.export import StructuredOptions
    from lumbar.structured.identity import Identity

    try:
        mode = Identity(identity)
    except ValueError:
        raise UserError(
            f"identity must be hospital or research, got {identity!r}", option="identity"
        ) from None
    options = StructuredOptions(dicom_sr=dicom_sr, fhir=fhir, stow=stow, identity=mode)
    result = predict_study(
        study, model, out, roi=roi, layer=layer, threads=threads, structured=options,
        echo=typer.echo,
    )  # fmt: skip
    for disc in result["discs"]:
        probs = ", ".join(f"{c} {p:.3f}" for c, p in disc["probabilities"].items())
        typer.echo(f"{disc['level']}: {disc['predicted']} ({probs})")
    if result["missing_levels"]:
        typer.echo(f"no axial image for: {', '.join(result['missing_levels'])}")
    if out is not None:
        typer.echo(f"wrote {out / 'summary.html'}")
    for path in getattr(result.get("structured"), "files", []):
        typer.echo(f"wrote {path}")


def export(
    run: Annotated[Path, typer.Argument(help="Run folder of `lumbar train`.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write (.onnx).")],
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 17,
    atol: Annotated[float, typer.Option(help="Largest allowed logit difference.")] = 1e-4,
) -> None:
    """Export a run's classifier to ONNX, checked against onnxruntime."""
    from lumbar.inference.onnx import export_onnx

    report = export_onnx(run, onnx, opset=opset, atol=atol)
    typer.echo(
        f"wrote {onnx} (input {report['input']['shape']}); onnxruntime max |diff| "
        f"{report['max_abs_diff']:.2e} <= {atol:g}"
    )


def serve(
    model: Annotated[Path, typer.Option("--model", help="Run folder of `lumbar train`.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    token_file: Annotated[
        Path | None,
        typer.Option(help="File holding the bearer token (default: $LUMBAR_SERVE_TOKEN)."),
    ] = None,
    max_upload_mb: Annotated[int, typer.Option(help="Largest upload (zip), MiB.")] = 512,
    max_unpacked_mb: Annotated[int, typer.Option(help="Largest unpacked study, MiB.")] = 2048,
    roi: Annotated[str | None, typer.Option(help="Crop override: grid, center:F or none.")] = None,
    threads: Annotated[
        int, typer.Option(help="CPU threads for the model (0: PyTorch's default).")
    ] = 0,
) -> None:
    """Serve predictions over HTTP: POST a study zip, GET its heat maps (bearer token)."""
    from lumbar.inference.serve import Limits
    from lumbar.inference.serve import serve as serve_model

    limits = Limits(max_upload=max_upload_mb * 2**20, max_unpacked=max_unpacked_mb * 2**20)
    serve_model(
        model, host=host, port=port, token_file=token_file, limits=limits, roi=roi,
        threads=threads, echo=typer.echo,
    )  # fmt: skip
