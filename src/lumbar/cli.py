"""The `lumbar` command line: one Typer app whose commands parse arguments and call the library.

Heavy modules (torch, pydicom, matplotlib) are imported inside the commands so that
`lumbar --help` stays fast.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lumbar import __version__
from lumbar.errors import UserError

app = typer.Typer(
    name="lumbar",
    help="Lumbar-spine MRI toolkit: phantom studies, DICOM ingest, grading, training, explanation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lumbar {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Lumbar-spine MRI toolkit (Al-kubaisi & Khamiss 2022, made into commands)."""


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create.")],
    kind: Annotated[
        str,
        typer.Option(
            help="lumbar: patient studies as DICOM (one folder each) with labels.csv; "
            "source: labelled brain-tumour phantoms in class folders with classes.yaml "
            "(Procedure 2); unlabelled: a folder tree of MRI PNG/DICOM (Procedure 3)."
        ),
    ] = "lumbar",
    patients: Annotated[
        int, typer.Option("--patients", "-n", help="Number of patients (lumbar).")
    ] = 181,
    images: Annotated[int, typer.Option(help="Number of images (source, unlabelled).")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 0,
    workers: Annotated[
        int, typer.Option(help="Processes to use (lumbar); 0 means one per CPU core.")
    ] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the contents of a non-empty OUT.")
    ] = False,
) -> None:
    """Write phantom MRI: lumbar studies with ground truth, or pretraining image sets."""
    if kind == "lumbar":
        from lumbar.synth import synthesize_cohort

        summary = synthesize_cohort(out, patients=patients, seed=seed, workers=workers, force=force)
        typer.echo(
            f"wrote {summary.patients} patients, {summary.files} DICOM files to {out} "
            f"(labels: {out / 'labels.csv'}) in {summary.seconds:.1f} s"
        )
    elif kind in ("source", "unlabelled"):
        from lumbar.synth.sets import synthesize_source_set, synthesize_unlabelled_set

        writer = synthesize_source_set if kind == "source" else synthesize_unlabelled_set
        result = writer(out, images=images, seed=seed, force=force)
        typer.echo(f"wrote {result.images} {kind} images to {out} in {result.seconds:.1f} s")
    else:
        raise UserError(f"unknown --kind {kind!r}; choose lumbar, source or unlabelled")


@app.command()
def montage(
    study: Annotated[Path, typer.Argument(help="One patient's folder of DICOM files.")],
    out: Annotated[Path, typer.Argument(help="PNG file to write.")],
    labels: Annotated[
        Path | None,
        typer.Option(help="labels.csv of `lumbar synth`, to print each disc's grades."),
    ] = None,
) -> None:
    """Draw one study's series (and its disc grades, if given) as a single PNG."""
    from lumbar.visualize.montage import write_study_montage

    write_study_montage(study, out, labels_csv=labels)
    typer.echo(f"wrote {out}")


@app.command()
def ingest(
    source: Annotated[
        str,
        typer.Argument(
            help="Folder of DICOM files, or a DICOMweb URL (http://host:port/dicom-web)."
        ),
    ],
    out: Annotated[Path, typer.Argument(help="Output folder; rerun into it to resume.")],
    workers: Annotated[
        int, typer.Option("--workers", "-j", help="Processes; 0 = one per core.")
    ] = 0,
    rules: Annotated[
        Path | None, typer.Option(help="YAML file of series classification rules (tried first).")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Print why each series got its class.")
    ] = False,
    order: Annotated[
        str,
        typer.Option(help="Frame order for Eq. 1-2: 'instance' (InstanceNumber) or 'position'."),
    ] = "instance",
    axial_selection: Annotated[
        str,
        typer.Option(help="'paper' (Eq. 2) or 'stacks' (middle slice of each per-disc stack)."),
    ] = "paper",
    bit_depth: Annotated[int, typer.Option(help="PNG bit depth: 8 or 16.")] = 8,
    export_dicom: Annotated[
        bool,
        typer.Option("--export-dicom", help="Also write de-identified DICOM (PS3.15 Annex E)."),
    ] = False,
    study_date: Annotated[
        str | None, typer.Option(help="Study date range YYYYMMDD-YYYYMMDD (either end optional).")
    ] = None,
    modality: Annotated[
        str | None, typer.Option(help="Only studies of this modality, e.g. MR.")
    ] = None,
    patients: Annotated[
        str | None,
        typer.Option(help="Only these pseudonyms: comma-separated, or @FILE with one per line."),
    ] = None,
    report_paths: Annotated[
        bool,
        typer.Option(
            "--report-paths",
            help="Name problem files by path in the report "
            "(default: keyed hash; paths may contain patient names).",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a non-empty, non-ingest OUT.")
    ] = False,
    contact_sheet: Annotated[
        Path | None,
        typer.Option(help="Also draw the selected images (12 patients) into this PNG."),
    ] = None,
) -> None:
    """Index DICOM, pick the paper's 8 images per patient (Eq. 1-2), de-identify and export."""
    from lumbar.ingest_cli import run_ingest

    run_ingest(
        source,
        out,
        workers=workers,
        rules=rules,
        explain=explain,
        order=order,
        axial_selection=axial_selection,
        bit_depth=bit_depth,
        export_dicom=export_dicom,
        study_date=study_date,
        modality=modality,
        patients=patients,
        report_paths=report_paths,
        force=force,
        contact_sheet=contact_sheet,
    )


@app.command()
def models(
    download: Annotated[
        list[str] | None,
        typer.Option(
            "--download",
            metavar="BACKBONE",
            help="Download this backbone's ImageNet weights into the torch hub cache "
            "(checked against their SHA-256); repeat for several, or 'all'.",
        ),
    ] = None,
) -> None:
    """List the backbones: weight sources, parameters, GFLOPs, ImageNet weights on this machine."""
    from rich.console import Console
    from rich.table import Table

    from lumbar.models import download_imagenet_weights, list_backbones
    from lumbar.models.summary import backbone_summaries

    for name in list_backbones() if download == ["all"] else download or []:
        path = download_imagenet_weights(name)
        typer.echo(f"{name}: {path}")
    rows = backbone_summaries()
    missing = [row for row in rows if not row.imagenet_available]
    caption = (
        "* the paper's four. --weights: imagenet, a .pth/.safetensors file (optional "
        "<file>.json sidecar declaring its preprocessing), a train/pretrain run folder, or "
        "scratch. GFLOPs: multiply-adds at 224x224."
    )
    if missing:
        files = ", ".join(row.imagenet_file for row in missing)
        caption += (
            f" Missing ImageNet files ({files}) go in {missing[0].imagenet_path.parent}/,"
            " or run: lumbar models --download NAME"
        )
    table = Table(title="lumbar backbones", caption=caption, caption_justify="left")
    table.add_column("backbone", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("GFLOPs", justify="right")
    table.add_column("feat", justify="right")
    table.add_column("weight sources")
    table.add_column("ImageNet input")
    for row in rows:
        here = "[green]here[/green]" if row.imagenet_available else "[red]missing[/red]"
        table.add_row(
            row.name + (" *" if row.paper else ""),
            f"{row.params / 1e6:.2f} M",
            f"{row.gflops:.2f}",
            str(row.feature_dim),
            f"imagenet ({here}), file, run, scratch",
            row.preprocessing,
        )
    Console().print(table)


dataset_app = typer.Typer(
    help="Datasets: build a manifest, split it by patient, describe it.", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")

_TargetOption = Annotated[
    str,
    typer.Option(
        help="Target to stratify on: disc_abnormal, disc_state, herniation, scs, rfs, lfs, "
        "scs_binary, rfs_binary, lfs_binary."
    ),
]
_RatiosOption = Annotated[
    str, typer.Option(help="Train/val/test shares, e.g. 75/15/10 (the paper's).")
]
_SeedOption = Annotated[int, typer.Option(help="Random seed; same seed, same split.")]


@dataset_app.command("build")
def dataset_build(
    images: Annotated[
        Path, typer.Option(help="Output folder of `lumbar ingest` (holds images.csv).")
    ],
    labels: Annotated[
        str,
        typer.Option(
            help="Labels CSV (patient_id, level, disc_state, herniation, scs, rfs, lfs), keyed "
            "by original PatientID or by pseudonym; or a labeler database URL."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Dataset folder to create (manifest.csv).")],
    split: Annotated[
        bool, typer.Option("--split/--no-split", help="Add a patient-level split column.")
    ] = True,
    target: _TargetOption = "disc_abnormal",
    ratios: _RatiosOption = "75/15/10",
    seed: _SeedOption = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the contents of a non-empty OUT.")
    ] = False,
) -> None:
    """Join ingested images with gradings into OUT/manifest.csv (pseudonyms only)."""
    from lumbar.data.build import build_dataset
    from lumbar.data.splits import parse_ratios

    summary = build_dataset(
        images,
        labels,
        out,
        split=split,
        target=target,
        ratios=parse_ratios(ratios),
        seed=seed,
        force=force,
    )
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    sizes = ", ".join(f"{k} {v}" for k, v in summary.split_rows.items())
    typer.echo(
        f"wrote {summary.manifest}: {summary.images} images of {summary.patients} patients, "
        f"{summary.labelled_images} labelled" + (f" (split: {sizes})" if sizes else "")
    )


@dataset_app.command("split")
def dataset_split(
    manifest: Annotated[Path, typer.Argument(help="manifest.csv to split (rewritten in place).")],
    target: _TargetOption = "disc_abnormal",
    ratios: _RatiosOption = "75/15/10",
    seed: _SeedOption = 0,
    folds: Annotated[
        int,
        typer.Option(
            help="Also add a `fold` column: K patient-grouped stratified folds over train+val "
            "(test stays held out). 0: none."
        ),
    ] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Write the split manifest here instead of in place.")
    ] = None,
) -> None:
    """Add or redo the patient-level, stratified `split` column (default 75/15/10, seeded)."""
    from lumbar.data.splits import parse_ratios, split_manifest

    summary = split_manifest(
        manifest, out=out, target=target, ratios=parse_ratios(ratios), seed=seed, folds=folds
    )
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {summary.path}" + (f" ({folds} folds over train+val)" if folds else ""))
    for name, rows in summary.rows.items():
        classes = ", ".join(f"{n} {c}" for n, c in summary.classes.get(name, {}).items())
        typer.echo(
            f"  {name:<5} {rows:>6} images {summary.patients[name]:>5} patients"
            + (f"   {target}: {classes}" if classes else "")
        )


@dataset_app.command("stats")
def dataset_stats(
    manifest: Annotated[Path, typer.Argument(help="manifest.csv to describe.")],
    out: Annotated[Path, typer.Option(help="Folder for the tables (CSV) and charts (PNG).")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the contents of a non-empty OUT.")
    ] = False,
) -> None:
    """Table 5 (disc state by level), stenosis grades, split sizes, and Figures 3-5 and 9."""
    from lumbar.data.stats import format_table5, write_stats

    stats = write_stats(manifest, out, force=force)
    typer.echo(format_table5(stats))
    typer.echo(f"wrote tables and charts to {out}")


@app.command()
def roi(
    manifest: Annotated[
        Path | None, typer.Argument(help="manifest.csv whose images to crop.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="New dataset folder (with MANIFEST), or the PNG (with --figure)."),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(help="grid (the paper's Eq. 3 blocks), center:F (centred fraction F), none."),
    ] = "grid",
    figure: Annotated[
        Path | None,
        typer.Option(help="Draw the ROI on this image (Figures 6-7) instead of cropping."),
    ] = None,
    views: Annotated[
        str,
        typer.Option(help="Comma-separated views to crop (others are kept uncropped), or 'all'."),
    ] = "axial_t2",
    credit: Annotated[
        str | None, typer.Option(help="Source/licence line printed under the figure.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the contents of a non-empty OUT.")
    ] = False,
) -> None:
    """Crop a dataset to the region of interest, or draw the ROI grid on an image."""
    from lumbar.data.roi import crop_manifest, draw_roi_figure, parse_roi

    chosen = parse_roi(mode)
    if out is None:
        raise UserError("--out is required")
    if figure is not None:
        if manifest is not None:
            raise UserError("give either MANIFEST (to crop) or --figure IMAGE (to draw), not both")
        typer.echo(f"wrote {draw_roi_figure(figure, out, chosen, credit=credit)}")
        return
    if manifest is None:
        raise UserError("give a MANIFEST to crop, or --figure IMAGE to draw the ROI")
    chosen_views = None if views.strip() == "all" else [v.strip() for v in views.split(",")]
    written, count = crop_manifest(manifest, out, chosen, views=chosen_views, force=force)
    typer.echo(f"wrote {count} cropped images ({chosen.spec}) and {written}")


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Run folder to create (or --resume).")],
    manifest: Annotated[Path | None, typer.Option(help="manifest.csv with a split column.")] = None,
    target: Annotated[str | None, typer.Option(help="Target (default disc_abnormal).")] = None,
    backbone: Annotated[
        str | None, typer.Option(help="Backbone (default efficientnet_lite0; see `lumbar models`).")
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="imagenet (default), scratch, a weights file or a run folder."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(help="frozen (default: head only) or finetune (last --unfreeze units)."),
    ] = None,
    unfreeze: Annotated[
        int | None, typer.Option(help="Units to fine-tune, from the end (default 1 block).")
    ] = None,
    unfreeze_unit: Annotated[
        str | None, typer.Option(help="block (default) or layer (a convolution).")
    ] = None,
    roi: Annotated[
        str | None,
        typer.Option(help="ROI applied by the loader: none (default), grid, center:F."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML file of options; command-line options win.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default 0).")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs (default 50; 100 from scratch).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default 64).")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default 1e-3 frozen, 1e-5 fine-tuning).")
    ] = None,
    early_stop: Annotated[
        int | None, typer.Option(help="Stop after N epochs without a lower val loss (0: off).")
    ] = None,
    input_size: Annotated[
        int | None, typer.Option(help="Override the weights' input size (pixels, square).")
    ] = None,
    bn_stats: Annotated[
        str | None,
        typer.Option(
            help="Fine-tuning: frozen (default; BatchNorm statistics fixed, as Keras advises) "
            "or update."
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run the naive loop (no frozen-layer cache).")
    ] = False,
    device: Annotated[
        str | None, typer.Option(help="auto (default: the GPU if any), cpu or cuda.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run in --out.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train the paper's classifier (Procedure 1): frozen or fine-tuned transfer learning."""
    from lumbar.train import TrainConfig, load_config_file, train

    values: dict = load_config_file(config) if config is not None else {}
    given = {
        "manifest": None if manifest is None else str(manifest),
        "target": target,
        "backbone": backbone,
        "weights": weights,
        "mode": mode,
        "unfreeze": unfreeze,
        "unfreeze_unit": unfreeze_unit,
        "roi": roi,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "early_stop": early_stop,
        "input_size": input_size,
        "bn_stats": bn_stats,
        "device": device,
    }
    values.update({k: v for k, v in given.items() if v is not None})
    if no_cache:
        values["cache_features"] = False
    if "manifest" not in values:
        if not resume:
            raise UserError("--manifest is required (or a config file with manifest:)")
        values["manifest"] = ""
    result = train(
        TrainConfig(**values),
        out,
        resume=resume,
        progress=not quiet,
        log=lambda line: typer.echo(line, err=True),
    )
    from lumbar.train.runtime import shutdown_distributed

    shutdown_distributed()  # under torchrun: leave the process group before exiting
    test = result.metrics.get("test")
    summary = f"wrote {out} (kept epoch {result.best_epoch}, {result.seconds:.0f} s)"
    if test:
        summary += f"; test accuracy {test['accuracy']:.3f}, F1 {test['f1']:.3f}"
    typer.echo(summary)


@app.command()
def evaluate(
    runs: Annotated[list[Path], typer.Argument(help="Run folder(s) of `lumbar train`.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    manifest: Annotated[
        Path | None, typer.Option(help="Score another manifest with the same target column.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (one line per run).")
    ] = False,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs.")] = 1000,
) -> None:
    """Accuracy, precision, recall, F1, ROC AUC with 95% patient-bootstrap CIs; confusion PNG.

    Several runs print one table shaped like the paper's Tables 6-9.
    """
    import json

    from lumbar.train.evaluate import evaluate_run, run_label

    results = [evaluate_run(r, split=split, manifest=manifest, resamples=resamples) for r in runs]
    if as_json:
        for result in results:
            typer.echo(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    first = results[0]
    table = Table(
        title=f"{split} split",
        caption=f"% with 95% CIs (patient bootstrap, {resamples} resamples); precision, recall, "
        f"F1: {first['average']}",
        caption_justify="left",
    )
    columns = ("accuracy", "precision", "recall", "f1")  # the paper's Tables 6-9
    for column in ("model", "weights", "mode", "images", *columns):
        left = column in ("model", "weights", "mode")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)

    def cell(value: float | None, ci: list[float] | None) -> str:
        if value is None:
            return "n/a"
        text = f"{100 * value:.1f}"
        return text if ci is None else f"{text} ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})"

    for run, result in zip(runs, results, strict=True):
        images = f"{result['n']} ({result['patients']} pt)"
        table.add_row(*run_label(run), images, *(cell(result[k], result["ci"][k]) for k in columns))
    Console(width=max(160, Console().width)).print(table)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="Baseline run (old, x1 in Eq. 8).")],
    run_b: Annotated[Path, typer.Argument(help="New run (x2 in Eq. 8).")],
    split: Annotated[str, typer.Option(help="Split both runs are scored on.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Eq. 8 improvement rates of RUN_B over RUN_A, with paired bootstrap p-values."""
    import json

    from lumbar.train.evaluate import compare_runs

    result = compare_runs(run_a, run_b, split=split)
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{run_b.name} vs {run_a.name} ({result['n']} {split} images, "
        f"{result['patients']} patients)",
        caption="improvement = (B - A) / |A| x 100 (Eq. 8); p: paired patient bootstrap",
        caption_justify="left",
    )
    for column in ("metric", "A", "B", "improvement %", "95% CI of B - A", "p"):
        table.add_column(column, justify="right" if column != "metric" else "left")

    def fmt(value: float | None, spec: str = ".3f") -> str:
        return "n/a" if value is None else format(value, spec)

    for key, paired in result["paired"].items():
        ci = "n/a" if paired["low"] is None else f"{paired['low']:+.3f} - {paired['high']:+.3f}"
        table.add_row(
            key,
            fmt(result["a"][key]),
            fmt(result["b"][key]),
            fmt(result["improvement"][key], "+.1f"),
            ci,
            fmt(paired["p_value"]),
        )
    Console().print(table)


label_app = typer.Typer(
    help="FaLa: the radiologists' grading web app (Table 3) and its gradings database.",
    no_args_is_help=True,
)
app.add_typer(label_app, name="label")

_DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        help="Gradings database: a SQLite file path, or a URL (sqlite:///f.db, postgresql://...).",
    ),
]


@label_app.command("serve")
def label_serve(
    images: Annotated[Path, typer.Option(help="Output folder of `lumbar ingest` (images.csv).")],
    db: _DbOption = "fala.db",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    secure_cookies: Annotated[
        bool | None,
        typer.Option(
            "--secure-cookies/--no-secure-cookies",
            help="Mark cookies Secure; default: when the request came over https.",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Run folder of `lumbar train`: show its suggestion per disc (never saved).",
        ),
    ] = None,
) -> None:
    """Serve the grading web app (every page needs a login; see `label add-user`)."""
    import logging

    import uvicorn

    from lumbar.labeler.app import create_app
    from lumbar.labeler.catalog import load_catalog
    from lumbar.labeler.store import Store

    catalog = load_catalog(images)
    suggestions = _label_suggestions(model, catalog) if model is not None else None
    store = Store(db)
    if not store.users():
        typer.echo("note: no accounts yet; create one: lumbar label add-user NAME --role admin")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    typer.echo(f"FaLa: {len(catalog.patients)} patients; open http://{shown}:{port}/")
    app_ = create_app(store, catalog, secure_cookies=secure_cookies, suggestions=suggestions)
    uvicorn.run(app_, host=host, port=port, proxy_headers=True, log_level="info")


def _label_suggestions(model: Path, catalog: Any) -> Any:
    """Load `model` for the grading app and try it on one patient now, not at the first page.

    Raises:
        UserError: not a loadable run folder, or its model fails on this catalog's images.
    """
    from lumbar.inference.predict import Predictor
    from lumbar.labeler.suggestions import Suggestions

    suggestions = Suggestions(Predictor.load(model), catalog)
    first = next(iter(catalog.patients), None)
    if first is not None:
        try:
            suggestions.for_patient(first)
        except Exception as err:  # a wrong-shaped model, unreadable images: say so at start-up
            reason = (str(err).splitlines() or [""])[0]
            raise UserError(
                f"--model {model}: the model fails on the images of {first}: "
                f"{type(err).__name__}: {reason}"
            ) from err
    typer.echo(f"model suggestions from {model.name} (shown as AI suggestions, never saved)")
    return suggestions


@label_app.command("add-user")
def label_add_user(
    name: Annotated[str, typer.Argument(help="Login name (letters, digits, . _ -).")],
    role: Annotated[str, typer.Option(help="radiologist or admin.")] = "radiologist",
    db: _DbOption = "fala.db",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an account; the password is prompted (or read from stdin) and stored as argon2."""
    from lumbar.labeler.store import Store

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = Store(db).add_user(name, role, password)
    typer.echo(f"created {user.role} {user.name}")


@label_app.command("agreement")
def label_agreement(
    db: _DbOption = "fala.db",
    weights: Annotated[str, typer.Option(help="linear, quadratic or none.")] = "linear",
    out: Annotated[Path | None, typer.Option(help="Also write the table as CSV.")] = None,
) -> None:
    """Cohen's weighted kappa per field and disc level for each pair of raters."""
    import csv
    import io

    from lumbar.files import write_text_atomic
    from lumbar.labeler.agreement import WEIGHTS, agreement_table
    from lumbar.labeler.store import Store

    if weights not in WEIGHTS:
        raise UserError(f"--weights must be one of {', '.join(WEIGHTS)}")
    rows = agreement_table(Store(db, create=False), weights=weights)
    if not rows:
        typer.echo("no two raters graded the same discs yet")
    for r in rows:
        kappa = "undefined" if r.kappa is None else f"{r.kappa:.3f}"
        typer.echo(
            f"{r.rater_a} x {r.rater_b}  {r.field:<10} {r.level:<6} n={r.n:<4} kappa={kappa}"
        )
    if out is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["rater_a", "rater_b", "field", "level", "n", "kappa", "weights"])
        for r in rows:
            kappa = "" if r.kappa is None else f"{r.kappa:.6f}"
            writer.writerow([r.rater_a, r.rater_b, r.field, r.level, r.n, kappa, weights])
        write_text_atomic(out, buffer.getvalue())
        typer.echo(f"wrote {out}")


@label_app.command("export")
def label_export(
    out: Annotated[Path, typer.Option(help="table4: a folder; manifest: a CSV file (or folder).")],
    db: _DbOption = "fala.db",
    format: Annotated[str, typer.Option("--format", help="table4 or manifest.")] = "table4",
    rater: Annotated[
        str | None,
        typer.Option(
            help="A rater's name or 'consensus'; default: consensus, else a level's only rater."
        ),
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="Output folder of `lumbar ingest` (manifest only).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty table4 folder.")
    ] = False,
) -> None:
    """Write gradings as Table 4 CSVs (one per patient) or as a DESIGN.md manifest."""
    from lumbar.labeler.exchange import export_manifest, export_table4
    from lumbar.labeler.store import Store

    store = Store(db, create=False)
    if format == "table4":
        count = export_table4(store, out, rater=rater, force=force)
        typer.echo(f"wrote {count} patient file(s) to {out}")
    elif format == "manifest":
        if images is None:
            raise UserError("--format manifest needs --images INGEST_OUT (the images it lists)")
        from lumbar.labeler.catalog import load_catalog

        count = export_manifest(store, load_catalog(images), out, rater=rater)
        typer.echo(f"wrote {count} image row(s) to {out}")
    else:
        raise UserError(f"--format must be table4 or manifest, not {format!r}")


@label_app.command("import")
def label_import(
    csv_path: Annotated[
        Path, typer.Argument(metavar="CSV", help="patient_id, level, disc_state, herniation, ...")
    ],
    rater: Annotated[str, typer.Option(help="Whose gradings: a rater's name or 'consensus'.")],
    db: _DbOption = "fala.db",
    by: Annotated[
        str | None, typer.Option(help="Account recorded in the audit trail (default: RATER).")
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="Check patient ids against this ingest output.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite existing gradings (audited).")
    ] = False,
) -> None:
    """Import existing gradings from a CSV: validated first, then all or nothing."""
    from lumbar.labeler.exchange import import_labels
    from lumbar.labeler.store import Store

    patients = None
    if images is not None:
        from lumbar.labeler.catalog import load_catalog

        patients = set(load_catalog(images).patients)
    count = import_labels(
        Store(db, create=False), csv_path, rater=rater, by=by, replace=replace, patients=patients
    )
    typer.echo(f"imported {count} grading(s) for {rater}")


@app.command()
def explain(
    run: Annotated[Path, typer.Argument(help="Run folder of `lumbar train` to explain.")],
    images: Annotated[
        list[Path] | None, typer.Argument(help="Image files (instead of --manifest).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the overlays.")] = Path("explain"),
    manifest: Annotated[
        Path | None, typer.Option(help="Explain this manifest's images (one split, one view).")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Split of --manifest: train, val, test, or 'all'.")
    ] = "test",
    view: Annotated[
        str, typer.Option(help="View of --manifest to explain, or 'all'.")
    ] = "axial_t2",
    limit: Annotated[int | None, typer.Option(help="At most this many images.")] = None,
    compare: Annotated[
        list[Path] | None,
        typer.Option(help="More run folders drawn beside RUN in one grid (repeatable)."),
    ] = None,
    layer: Annotated[
        str,
        typer.Option(help="Grad-CAM layer: features (trunk output), last_conv, or a module path."),
    ] = "features",
    target_class: Annotated[
        int | None,
        typer.Option("--class", help="Class index to explain (default: the predicted class)."),
    ] = None,
    lesions: Annotated[
        Path | None,
        typer.Option(help="lesions.csv of `lumbar synth`: score the pointing game."),
    ] = None,
    ingest: Annotated[
        Path | None, typer.Option(help="Ingest folder of the manifest (its pseudonym secret).")
    ] = None,
    lesions_only: Annotated[
        bool, typer.Option("--lesions-only", help="Only images with a lesion box.")
    ] = False,
    tolerance: Annotated[
        float, typer.Option(help="Pointing game: pixels of margin around each lesion box.")
    ] = 0.0,
    roi: Annotated[
        str | None,
        typer.Option(help="Crop before the model (default: the run's loader ROI, e.g. none)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty OUT.")] = False,
) -> None:
    """Grad-CAM heat maps of a run's predictions (Figures 17-18), and the pointing game."""
    from lumbar.explain import explain_run, items_from_manifest, items_from_paths, read_run_config
    from lumbar.files import prepare_output_dir

    if (manifest is None) == (not images):
        raise UserError("give either --manifest MANIFEST or IMAGES, not both")
    prepare_output_dir(out, force=force)
    config = read_run_config(run)
    if manifest is not None:
        items = items_from_manifest(
            manifest,
            split=None if split in (None, "all") else split,
            view=None if view == "all" else view,
            limit=limit,
            target_name=config.get("target"),
            lesions=lesions,
            ingest=ingest,
            lesions_only=lesions_only,
        )
    else:
        items = items_from_paths(images or [])[:limit]
    summary = explain_run(
        run,
        items,
        out,
        compare=compare or [],
        layer=layer,
        target=target_class,
        tolerance=tolerance,
        roi=roi,
    )
    typer.echo(f"explained {len(items)} images under {len(summary['runs'])} run(s) in {out}")
    for label, info in summary["runs"].items():
        for key, game in info.items():
            if key.startswith("pointing_game"):
                group = key.removeprefix("pointing_game").strip("_") or "all lesions"
                typer.echo(
                    f"  {label}: pointing game ({group}) {game['hits']}/{game['lesions']} = "
                    f"{game['hit_rate']:.1%} (random point: {game['random_baseline']:.1%})"
                )


@app.command()
def predict(
    study: Annotated[Path, typer.Argument(help="Folder of one study's DICOM files.")],
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
) -> None:
    """Predict each disc of one DICOM study, with class probabilities and Grad-CAM maps."""
    from lumbar.inference.predict import Predictor, set_threads

    set_threads(threads)
    predictor = Predictor.load(model, roi=roi, layer=layer)
    result = predictor.predict_study(study, out)
    for disc in result["discs"]:
        probs = ", ".join(f"{c} {p:.3f}" for c, p in disc["probabilities"].items())
        typer.echo(f"{disc['level']}: {disc['predicted']} ({probs})")
    if result["missing_levels"]:
        typer.echo(f"no axial image for: {', '.join(result['missing_levels'])}")
    if out is not None:
        typer.echo(f"wrote {out / 'summary.html'}")


@app.command()
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


@app.command()
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
    import logging

    import uvicorn

    from lumbar.inference.predict import Predictor, set_threads
    from lumbar.inference.serve import Limits, create_app, load_token

    set_threads(threads)
    token = load_token(token_file)
    predictor = Predictor.load(model, roi=roi)
    limits = Limits(max_upload=max_upload_mb * 2**20, max_unpacked=max_unpacked_mb * 2**20)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    typer.echo(f"lumbar serve: model {model.name}; POST http://{host}:{port}/v1/predict")
    uvicorn.run(create_app(predictor, token, limits), host=host, port=port, log_level="info")


# Commands defined in their own modules (each imports only typer at top level).
from lumbar.experiment_cli import experiment_command  # noqa: E402
from lumbar.pretrain_cli import pretrain_app  # noqa: E402
from lumbar.report_cli import report_command  # noqa: E402

app.add_typer(pretrain_app, name="pretrain")
app.command("experiment")(experiment_command)
app.command("report")(report_command)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line and exit 2.

    SIGTERM is handled like Ctrl-C, so a killed command still removes its partial output.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        # in non-standalone mode Typer returns exit codes (130 after Ctrl-C) instead of exiting
        result = app(standalone_mode=False)
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        result = 130
    except typer.Abort:
        result = 130
    except typer.TyperException as err:  # usage errors: bad option, missing argument
        typer.echo(f"error: {err.format_message()} (see --help)", err=True)
        sys.exit(err.exit_code)
    if result == 130:
        typer.echo("interrupted", err=True)
    if isinstance(result, int) and result:
        sys.exit(result)


if __name__ == "__main__":
    main()
