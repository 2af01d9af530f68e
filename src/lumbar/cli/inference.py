"""`lumbar predict`, `export` and `serve` (`lumbar.inference`).

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def predict(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Sagittal images (PNG, JPEG, DICOM slice), DICOM study folders, or DICOMweb "
            "study URLs (http://HOST/dicom-web/studies/UID); any number, mixed.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for predictions.csv, summary.html and one folder per input "
            "(prediction.json, overlay.png, gradcam/); without it only the structured "
            "outputs asked for are made.",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="A run to use besides the bundled models: `lumbar train` on axial images "
            "(studies' axial discs graded too), or a localiser or grader run.",
        ),
    ] = None,
    gradcam: Annotated[
        bool, typer.Option("--gradcam/--no-gradcam", help="Grad-CAM map of every disc.")
    ] = True,
    roi: Annotated[
        str | None,
        typer.Option(help="Axial crop override: grid, center:F or none (default: the run's)."),
    ] = None,
    layer: Annotated[
        str, typer.Option(help="Axial Grad-CAM layer: features, last_conv, or a module path.")
    ] = "features",
    threads: Annotated[
        int, typer.Option(help="CPU threads for the models (0: PyTorch's default).")
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
    """Grade every disc of sagittal images and studies with the bundled models.

    Outputs and messages name a PNG/JPEG input by its path as given, and a DICOM study,
    DICOM file or URL (whose path may name the patient) by the keyed pseudonym of its
    patient, or `input N` when it fails before that is known.

    Exit code 0: every input was predicted.

    Exit code 2: an input failed (one line each on stderr; the others are still predicted).

    Exit code 2 also for a wrong call (an option, a model, the output folder).
    """
    from lumbar.errors import UserError
    from lumbar.inference.batch import load_predict_models, predict_inputs
    from lumbar.inference.predict import set_threads
    from lumbar.structured.export import StructuredOptions
    from lumbar.structured.identity import Identity

    try:
        mode = Identity(identity)
    except ValueError:
        raise UserError(
            f"identity must be hospital or research, got {identity!r}", option="identity"
        ) from None
    options = StructuredOptions(dicom_sr=dicom_sr, fhir=fhir, stow=stow, identity=mode)
    if out is None and not options.wanted():
        raise UserError(
            "give an output folder, or a structured output (DICOM SR, FHIR, STOW-RS)",
            option="out",
        )
    set_threads(threads)
    models = load_predict_models(model, roi=roi, layer=layer)
    batch = predict_inputs(
        inputs, out, models, gradcam=gradcam, echo=typer.echo,
        fail=lambda line: typer.echo(f"error: {line}", err=True), structured=options,
    )  # fmt: skip
    for outcome in batch.inputs:
        if outcome.error:
            continue
        for d in outcome.prediction["discs"]:
            parts = []
            if d.get("p_abnormal") is not None:
                parts.append(f"P(abnormal) {d['p_abnormal']:.3f}")
            if d.get("axial"):
                probs = ", ".join(f"{c} {p:.3f}" for c, p in d["axial"]["probabilities"].items())
                parts.append(f"axial {d['axial']['predicted']} ({probs})")
            typer.echo(f"{outcome.name} {d['level']}: {'; '.join(parts)}")
    wrote = f"; wrote {out / 'summary.html'}" if out is not None else ""
    typer.echo(
        f"{len(batch.inputs) - batch.failed} of {len(batch.inputs)} inputs predicted, "
        f"{batch.discs} discs{wrote}"
    )
    if batch.failed:
        raise typer.Exit(UserError.exit_code)


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
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="A run besides the bundled models (as for `lumbar predict`): an axial "
            "`lumbar train` run grades studies' axial images too.",
        ),
    ] = None,
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
    """Serve predictions over HTTP: POST a study zip or a sagittal image, GET its pictures
    (bearer token)."""
    from lumbar.inference.serve import Limits
    from lumbar.inference.serve import serve as serve_model

    limits = Limits(max_upload=max_upload_mb * 2**20, max_unpacked=max_unpacked_mb * 2**20)
    serve_model(
        model, host=host, port=port, token_file=token_file, limits=limits, roi=roi,
        threads=threads, echo=typer.echo,
    )  # fmt: skip
