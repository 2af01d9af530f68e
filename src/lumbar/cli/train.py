"""`lumbar train`, `evaluate` and `compare` (`lumbar.train`).

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli.options import DeviceOption, QuietOption, ResumeOption


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
    recipe: Annotated[
        str | None,
        typer.Option(
            help="paper (default: the published head and settings) or regularized (linear "
            "head on standardised features, weight decay chosen on the validation split, "
            "flips, class balance; better on real SPIDER discs, see benchmarks/grader.py)."
        ),
    ] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option(help="Adam's weight decay (paper: 0; regularized: chosen on validation)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run the naive loop (no frozen-layer cache).")
    ] = False,
    device: DeviceOption = None,
    resume: ResumeOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train the paper's classifier (Procedure 1): frozen or fine-tuned transfer learning."""
    from lumbar.train import TrainConfig, train

    settings = TrainConfig.from_options(
        config,
        resume=resume,
        manifest=manifest,
        target=target,
        backbone=backbone,
        weights=weights,
        mode=mode,
        unfreeze=unfreeze,
        unfreeze_unit=unfreeze_unit,
        roi=roi,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        early_stop=early_stop,
        input_size=input_size,
        bn_stats=bn_stats,
        recipe=recipe,
        weight_decay=weight_decay,
        device=device,
        cache_features=False if no_cache else None,
    )
    result = train(
        settings,
        out,
        resume=resume,
        progress=not quiet,
        log=lambda line: typer.echo(line, err=True),
    )
    test = result.metrics.get("test")
    summary = f"wrote {out} (kept epoch {result.best_epoch}, {result.seconds:.0f} s)"
    if test:
        summary += f"; test accuracy {test['accuracy']:.3f}, F1 {test['f1']:.3f}"
    typer.echo(summary)


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
