"""`lumbar pretrain supervised|unlabelled`: the paper's Procedures 2 and 3.

Only typer and the standard library are imported here; torch comes in when a command runs.
Both commands also run under `torchrun` (one process per GPU, or several CPU processes):

    torchrun --nproc_per_node 4 -m lumbar.cli pretrain unlabelled --data B/ --out RUN ...

`lumbar pretrain unlabeled` (the spelling of earlier releases) still works, unlisted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli.options import DeviceOption, QuietOption, ResumeOption, echo_err

pretrain_app = typer.Typer(
    help="Pretrain a backbone on same-domain MRI (the paper's Procedures 2 and 3); use the "
    "run folder as `lumbar train --weights RUN`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DataOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--data",
        help="Image folder (repeat for several; searched to any depth). Required unless --resume.",
    ),
]
OutOption = Annotated[Path, typer.Option("--out", help="Run folder to create (or --resume).")]
BackboneOption = Annotated[
    str, typer.Option(help="Backbone (see `lumbar models`): vgg16, vgg19, resnet50, ...")
]
InputSizeOption = Annotated[
    int | None,
    typer.Option(help="Square input side in pixels (default: the backbone's, 224)."),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(help="Processes decoding images (default 2; 0: in the training process)."),
]
SeedOption = Annotated[
    int | None, typer.Option(help="Seed of split, shuffling, augmentation, init (default 0).")
]
MaxImagesOption = Annotated[
    int | None, typer.Option(help="Use a stable subset of at most N images (quick runs).")
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(help="torch CPU threads (default: torch's); fewer on a busy or shared CPU."),
]


def _main_process() -> bool:
    """False in the other processes of a torchrun job (one summary line, not one per process)."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _print_summary(summary: str, out: Path, backbone: str) -> None:
    """One line (from the main process only) on what was written and how to use it."""
    if _main_process():
        typer.echo(summary + f"; use: lumbar train --backbone {backbone} --weights {out}")


@pretrain_app.command()
def supervised(
    out: OutOption,
    data: DataOption = None,
    backbone: BackboneOption = "vgg16",
    classes: Annotated[
        Path | None,
        typer.Option(
            help="YAML mapping folder name -> class (e.g. glioma: abnormal, no_tumor: normal). "
            "Default: ROOT/classes.yaml if present, else each folder is its own class."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 100, the paper's).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default 64).")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default 1e-5).")] = None,
    val_fraction: Annotated[
        float | None, typer.Option(help="Validation share (default 0.15, the paper's 85/15).")
    ] = None,
    input_size: InputSizeOption = None,
    workers: WorkersOption = None,
    seed: SeedOption = None,
    max_images: MaxImagesOption = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
    resume: ResumeOption = False,
    quiet: QuietOption = False,
) -> None:
    """Procedure 2: train a backbone from scratch on labelled MRI in class folders.

    Each --data ROOT holds one sub-folder per class, as the public brain-tumour collections do.

    Same-named folders under several roots merge; --classes groups them (normal / abnormal).

    Paper defaults: 85/15 split, lr 1e-5, batch 64, 100 epochs, lowest validation loss kept.
    """
    from lumbar.pretrain import SupervisedPretrainConfig, pretrain_supervised

    config = SupervisedPretrainConfig.from_options(
        data, resume=resume, backbone=backbone, classes=classes, epochs=epochs,
        batch_size=batch_size, lr=lr, val_fraction=val_fraction, input_size=input_size,
        workers=workers, seed=seed, max_images=max_images, threads=threads, device=device,
    )  # fmt: skip
    result = pretrain_supervised(config, out, resume=resume, progress=not quiet, log=echo_err)
    best = result.history[result.best_epoch - 1] if result.best_epoch else None
    summary = (
        f"wrote {out} (supervised {result.backbone}, {result.images} images, kept epoch "
        f"{result.best_epoch}, {result.seconds:.0f} s)"
    )
    if best is not None:
        summary += f"; validation loss {best['val_loss']:.4f}, F1 {best['val_f1']:.3f}"
    _print_summary(summary, out, result.backbone)


@pretrain_app.command()
def unlabelled(
    out: OutOption,
    data: DataOption = None,
    backbone: BackboneOption = "vgg16",
    method: Annotated[
        str,
        typer.Option(help="Self-supervised method: simclr (contrastive, NT-Xent; see README)."),
    ] = "simclr",
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 100).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per batch, two views each (default 128).")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Adam learning rate, cosine-decayed (default 1e-3).")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="NT-Xent temperature (default 0.2).")
    ] = None,
    input_size: InputSizeOption = None,
    workers: WorkersOption = None,
    seed: SeedOption = None,
    max_images: MaxImagesOption = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
    resume: ResumeOption = False,
    quiet: QuietOption = False,
) -> None:
    """Procedure 3: self-supervised pretraining (SimCLR) on a folder tree of unlabelled MRI.

    --data holds PNG/JPEG/TIFF images and/or DICOM files (with or without .dcm), at any depth.

    Unreadable files are skipped and counted; the projection head is discarded at the end.
    """
    from lumbar.pretrain import SSLPretrainConfig, pretrain_unlabelled

    config = SSLPretrainConfig.from_options(
        data, resume=resume, backbone=backbone, method=method, epochs=epochs,
        batch_size=batch_size, lr=lr, temperature=temperature, input_size=input_size,
        workers=workers, seed=seed, max_images=max_images, threads=threads, device=device,
    )  # fmt: skip
    result = pretrain_unlabelled(config, out, resume=resume, progress=not quiet, log=echo_err)
    last = result.history[-1] if result.history else None
    summary = (
        f"wrote {out} ({result.method} {result.backbone}, {result.images} images, "
        f"{len(result.history)} epochs, {result.seconds:.0f} s)"
    )
    if last is not None:
        summary += f"; final loss {last['loss']:.4f}"
    _print_summary(summary, out, result.backbone)


# the spelling of earlier releases, kept working but not listed
pretrain_app.command("unlabeled", hidden=True)(unlabelled)
