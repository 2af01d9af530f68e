"""Charts: learning curves, confusion matrices, and the paper's dataset figures (3-5, 9).

Each function draws the numbers it is given into a PNG, written atomically, and returns its
path. The numbers come from the stage that owns them: a run's history (`lumbar.runs`), the
evaluation (`lumbar.train.evaluate`), the dataset statistics (`lumbar.data.stats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lumbar.errors import UserError
from lumbar.files import atomic_path
from lumbar.grading import STENOSIS_FIELDS, Stenosis

__all__ = [
    "confusion_matrix",
    "contrastive_curve",
    "dataset_charts",
    "learning_curve",
    "mean_learning_curves",
]

VIEW_TITLES = {"axial_t2": "Axial T2", "sagittal_t2": "Sagittal T2", "myelo": "Myelography"}
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, **options: Any) -> Path:
    """Write `fig` to `out` (PNG, atomically) and close it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", **options)
    _pyplot().close(fig)
    return out


# --------------------------------------------------------------------------- training


def learning_curve(history: Sequence[dict[str, float]], out: Path, best_epoch: int) -> Path:
    """Loss and accuracy per epoch, train vs validation, with the kept epoch marked."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, [r[f"train_{key}"] for r in history], label="train")
        ax.plot(epochs, [r[f"val_{key}"] for r in history], label="validation")
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_loss.legend()
    fig.tight_layout()
    return _save(fig, out, dpi=100)


def contrastive_curve(history: Sequence[dict[str, float]], out: Path) -> Path:
    """Contrastive (NT-Xent) loss and accuracy per epoch of a self-supervised run."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["loss"] for r in history])
    ax_loss.set_title("NT-Xent loss")
    ax_acc.plot(epochs, [r["contrastive_accuracy"] for r in history])
    ax_acc.set_title("contrastive accuracy (partner view ranked first)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out, dpi=100)


def _mean_band(
    histories: Sequence[Sequence[dict[str, float]]], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean, min and max of `key` over runs (each epoch over the runs that reached it)."""
    by_epoch: dict[int, list[float]] = {}
    for history in histories:
        for row in history:
            if key in row:
                by_epoch.setdefault(int(row["epoch"]), []).append(float(row[key]))
    epochs = np.array(sorted(by_epoch))
    values = [by_epoch[e] for e in epochs]
    return (
        epochs,
        np.array([np.mean(v) for v in values]),
        np.array([min(v) for v in values]),
        np.array([max(v) for v in values]),
    )


def mean_learning_curves(
    rows: Sequence[tuple[str, Sequence[Sequence[dict[str, float]]]]], out: Path, title: str
) -> Path:
    """Mean training/validation loss and validation accuracy per epoch of each (label,
    histories) row, with the min-max band over its runs."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (label, histories) in enumerate(rows):
        color = colors[k % len(colors)]
        suffix = f" (n={len(histories)})"
        for key, ax, style, name in (
            ("val_loss", ax_loss, "-", "val"),
            ("train_loss", ax_loss, "--", "train"),
            ("val_accuracy", ax_acc, "-", "val"),
        ):
            epochs, mean, low, high = _mean_band(histories, key)
            if len(epochs) == 0:
                continue
            legend = f"{label} {name}{suffix}" if ax is ax_loss else f"{label}{suffix}"
            ax.plot(epochs, mean, style, color=color, label=legend, lw=1.4)
            if len(histories) > 1 and style == "-":
                ax.fill_between(epochs, low, high, color=color, alpha=0.18, lw=0)
    ax_loss.set_title("loss (solid: validation, dashed: training)", fontsize=10)
    ax_acc.set_title("validation accuracy", fontsize=10)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out, dpi=90)


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], out: Path, title: str) -> Path:
    """A confusion matrix as a PNG (rows true, columns predicted, counts in the cells)."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    size = 1.2 + 0.9 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=30, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > threshold else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, out, dpi=100)


# --------------------------------------------------------------------------- dataset


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def dataset_charts(stats: Any, folder: Path) -> list[Path]:
    """The paper's dataset figures from a `lumbar.data.stats.DatasetStats` into `folder`:
    fig3_images_by_view.png, fig4_disc_state.png, fig5_disc_state_by_level.png,
    fig_stenosis.png and fig9_splits.png (those the statistics allow).

    Raises:
        UserError: nothing could be drawn.
    """
    plt = _pyplot()
    folder = Path(folder)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        written.append(_save(fig, folder / name, dpi=120))

    # Figure 3: images per series.
    fig, ax = plt.subplots(figsize=(5.5, 4))
    labels = [VIEW_TITLES.get(v, v) for v in stats.views]
    bars = ax.bar(labels, list(stats.views.values()), color=PALETTE[0])
    ax.bar_label(bars)
    ax.set_ylabel("images")
    ax.set_title(f"Images per series ({_plural(stats.patients, 'patient')})")
    ax.margins(y=0.12)
    save(fig, "fig3_images_by_view.png")

    if stats.disc_state_by_level:
        total = stats.disc_state_by_level["Total"]
        # Figure 4: disc state classes and the normal/abnormal grouping.
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [2, 1]})
        names = list(total)
        bars = ax1.bar([n.capitalize() for n in names], list(total.values()), color=PALETTE)
        ax1.bar_label(bars)
        ax1.set_ylabel("axial T2 images")
        ax1.set_title("Disc state")
        ax1.margins(y=0.12)
        abnormal = sum(v for n, v in total.items() if n != "normal")
        bars = ax2.bar(
            ["Normal", "Abnormal"], [total["normal"], abnormal], color=[PALETTE[0], PALETTE[3]]
        )
        ax2.bar_label(bars)
        ax2.set_title("Normal vs abnormal")
        ax2.margins(y=0.12)
        save(fig, "fig4_disc_state.png")

        # Figure 5: images per disc level, stacked by disc state.
        fig, ax = plt.subplots(figsize=(8, 4.2))
        levels = [lv for lv in stats.disc_state_by_level if lv != "Total"]
        bottom = [0] * len(levels)
        for color, name in zip(PALETTE, names, strict=True):
            values = [stats.disc_state_by_level[lv][name] for lv in levels]
            ax.bar(levels, values, bottom=bottom, label=name.capitalize(), color=color)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for x, height in enumerate(bottom):
            ax.text(x, height, str(height), ha="center", va="bottom")
        ax.set_ylim(0, max(bottom, default=1) * 1.12 + 1)
        ax.set_ylabel("axial T2 images")
        ax.set_title("Disc state by disc level (Table 5)")
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        save(fig, "fig5_disc_state_by_level.png")

    # Stenosis grades.
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    grade_names = [s.name.lower() for s in Stenosis]
    for ax, grade_field in zip(axes, STENOSIS_FIELDS, strict=True):
        counts = stats.grades[grade_field.value]
        bars = ax.bar(
            [g.capitalize() for g in grade_names], [counts[g] for g in grade_names], color=PALETTE
        )
        ax.bar_label(bars)
        ax.set_title(f"{grade_field.title} ({grade_field.value.upper()})", fontsize=10)
        ax.margins(y=0.12)
    axes[0].set_ylabel("axial T2 images")
    save(fig, "fig_stenosis.png")

    if stats.splits:
        # Figure 9: split sizes, normal vs abnormal discs, patients annotated.
        fig, ax = plt.subplots(figsize=(6, 4))
        splits = list(stats.splits)
        normal = [stats.splits[s]["normal"] for s in splits]
        abnormal = [stats.splits[s]["abnormal"] for s in splits]
        ax.bar(splits, normal, label="Normal", color=PALETTE[0])
        ax.bar(splits, abnormal, bottom=normal, label="Abnormal", color=PALETTE[3])
        labelled = sum(normal) + sum(abnormal)
        for x, s in enumerate(splits):
            n = normal[x] + abnormal[x]
            share = f"{100 * n / labelled:.0f}%" if labelled else "-"
            ax.text(
                x,
                n,
                f"{n} ({share})\n{_plural(stats.splits[s]['patients'], 'patient')}",
                ha="center",
                va="bottom",
                fontsize=9,
            )
        ax.set_ylabel("labelled axial T2 images")
        ax.set_title("Patient-level split (disc state)")
        ax.legend(frameon=False, loc="upper right")
        ax.margins(y=0.25)
        save(fig, "fig9_splits.png")
    if not written:
        raise UserError("no charts could be drawn")
    return written
