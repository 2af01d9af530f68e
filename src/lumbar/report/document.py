"""Everything the report shows, gathered from an experiment folder into one plain structure
that the HTML and Markdown writers fill their templates with."""

from __future__ import annotations

import os
import platform
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lumbar import __version__
from lumbar.report import figures
from lumbar.report.collect import DONE, Experiment, RunRecord, load_experiment
from lumbar.report.paper import PaperResults, load_paper_results
from lumbar.report.tables import (
    ImprovementTable,
    ResultTable,
    backbone_title,
    build_improvements,
    build_tables,
    table_number,
)

__all__ = ["Report", "build_report"]


@dataclass
class Report:
    """The report's content; figure paths lie inside the report-files folder being written."""

    experiment: Experiment
    paper: PaperResults
    files: Path
    generated: str
    summary: list[tuple[str, str]]
    datasets: list[Any] = field(default_factory=list)  # figures.DatasetFigures
    table5: list[dict[str, Any]] = field(default_factory=list)
    roi_figure: Path | None = None
    roi_spec: str = ""
    tables: list[ResultTable] = field(default_factory=list)
    curves: dict[str, Path] = field(default_factory=dict)  # table slug -> PNG
    confusions: dict[str, list[tuple[str, Path, int]]] = field(default_factory=dict)
    improvements: list[ImprovementTable] = field(default_factory=list)
    gradcam: list[Any] = field(default_factory=list)  # figures.GradcamFigure
    run_rows: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what the report could not show, and why
    commands: list[str] = field(default_factory=list)
    synthetic: bool = False


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def _machine(exp: Experiment) -> str:
    machine = exp.plan.get("machine")
    if isinstance(machine, dict):
        return ", ".join(f"{k}: {v}" for k, v in machine.items())
    if machine:
        return str(machine)
    devices = sorted(
        {
            str(((r.config or {}).get("train") or {}).get("device", "?"))
            for r in exp.runs
            if r.config
        }
    )
    return (
        f"not recorded by the runner (run device setting: {', '.join(devices) or 'unknown'}); "
        f"report written on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )


def _counts(items: list[dict[str, Any]]) -> str:
    status = Counter(str(p.get("status")) for p in items)
    return f"{len(items)} planned: " + ", ".join(f"{n} {s}" for s, n in status.items())


def _summary(exp: Experiment) -> list[tuple[str, str]]:
    runs = exp.runs
    status = Counter(r.status for r in runs)
    seeds = sorted({int(r.spec.get("seed") or 0) for r in runs})
    folds = sorted({int(r.spec["fold"]) for r in runs if r.spec.get("fold") is not None})
    epochs = sorted({e for r in runs if (e := r.epochs) is not None})
    run_time = sum(r.seconds or 0.0 for r in runs)
    pre_time = sum(float(p.get("seconds") or 0.0) for p in exp.pretrain)
    procedures = sorted({int(r.spec.get("procedure") or 0) for r in runs})
    targets = sorted({str(r.spec.get("target", "")) for r in runs} - {""})
    rows = [
        ("Experiment", exp.name),
        ("Created", str(exp.plan.get("created", "unknown"))),
        ("Procedures", ", ".join(str(p) for p in procedures) or "none"),
        ("Target", ", ".join(targets) or "unknown"),
        ("Backbones", ", ".join(backbone_title(b) for b in sorted({r.backbone for r in runs}))),
        ("Weight sources", ", ".join(sorted({r.source for r in runs}))),
        ("ROI settings", ", ".join(sorted({r.roi for r in runs}))),
        ("Epochs", ", ".join(map(str, epochs)) or "unknown"),
        ("Seeds", ", ".join(map(str, seeds))),
    ]
    if folds:
        rows.append(("Folds", ", ".join(map(str, folds))))
    rows += [
        ("Runs", f"{len(runs)} planned: " + ", ".join(f"{n} {s}" for s, n in status.items())),
        ("Pretraining runs", _counts(exp.pretrain) if exp.pretrain else "none"),
        (
            "Total time",
            f"{_hms(run_time + pre_time)} (training {_hms(run_time)}, "
            f"pretraining {_hms(pre_time)}; sum over runs)",
        ),
        ("Machine", _machine(exp)),
    ]
    return rows


def _run_row(run: RunRecord) -> dict[str, Any]:
    test = run.test or {}
    fold = run.spec.get("fold")
    return {
        "id": run.id,
        "table": (lambda n: n if not n.startswith("extra") else "extra")(table_number(run)),
        "procedure": run.spec.get("procedure", ""),
        "backbone": backbone_title(run.backbone),
        "source": run.source,
        "mode": run.mode,
        "roi": run.roi,
        "replicate": f"seed {run.spec.get('seed', 0)}" + ("" if fold is None else f", fold {fold}"),
        "status": run.status,
        "reason": run.reason,
        "f1": None if not test else 100.0 * float(test["f1"]),
        "accuracy": None if not test else 100.0 * float(test["accuracy"]),
        "seconds": run.seconds,
        "best_epoch": (run.metrics or {}).get("best_epoch"),
    }


def _table5(paper: PaperResults, stats: Any) -> list[dict[str, Any]]:
    """Rows of Table 5: level, our counts per class and the paper's."""
    entry = paper.table("5")
    classes = entry["columns"]
    ours = stats.disc_state_by_level if stats is not None else {}
    rows = []
    for level in list(entry["rows"]) + [lv for lv in ours if lv not in entry["rows"]]:
        mine = ours.get(level)
        rows.append(
            {
                "level": level,
                "ours": None if mine is None else [int(mine.get(c, 0)) for c in classes],
                "paper": entry["rows"].get(level),
            }
        )
    return rows


def _main_roi(exp: Experiment) -> str:
    rois = Counter(r.roi for r in exp.runs if r.roi != "none")
    return rois.most_common(1)[0][0] if rois else "grid"


def build_report(
    exp_dir: Path,
    files: Path,
    *,
    gradcam: bool = True,
    gradcam_images: int = 4,
    step: Callable[[str], None] = lambda name: None,
    log: Callable[[str], None] = lambda message: None,
) -> Report:
    """Read EXP and draw every figure into `files`.

    Args:
        gradcam: draw the Grad-CAM grids (loads models; the slowest part).
        step: called with the name of each part as it starts (for a progress display).
        log: called with one-line notes on what was left out.
    """
    exp = load_experiment(exp_dir)
    paper = load_paper_results()
    report = Report(exp, paper, files, time.strftime("%Y-%m-%d %H:%M"), _summary(exp))

    def note(message: str) -> None:
        report.missing.append(message)
        log(message)

    step("dataset")
    used = {str(r.spec.get("dataset", "")) for r in exp.runs}
    for name, entry in exp.datasets().items():
        if used and name not in used:
            continue
        try:
            found = figures.dataset_figures(name, entry, files / f"dataset-{name}")
        except Exception as err:  # a broken manifest must not stop the rest of the report
            note(f"dataset {name}: statistics not drawn ({type(err).__name__}: {err})")
            continue
        if found is None:
            note(f"dataset {name}: manifest not found, so no Table 5 or Figures 3-5")
            continue
        report.datasets.append(found)
        report.synthetic |= found.synthetic
    report.table5 = _table5(paper, report.datasets[0].stats if report.datasets else None)

    step("ROI figure")
    report.roi_spec = _main_roi(exp)
    if report.datasets:
        manifest = exp.datasets()[report.datasets[0].name]["manifest"]
        try:
            report.roi_figure = figures.roi_figure(
                Path(manifest), report.roi_spec, files / "roi.png"
            )
        except Exception as err:
            note(f"ROI figure not drawn ({type(err).__name__}: {err})")

    step("tables")
    report.tables = build_tables(exp, paper)
    report.improvements = build_improvements(report.tables, paper)
    for table in report.tables:
        if not table.planned:
            continue
        curve = figures.learning_curves(table, files / f"curves-{table.slug}.png")
        if curve is not None:
            report.curves[table.slug] = curve
        report.confusions[table.slug] = figures.confusion_figures(table, files)

    if gradcam and exp.done():
        step("Grad-CAM")
        report.gradcam = figures.gradcam_figures(
            exp, report.tables, files, images=gradcam_images, log=note
        )
    elif not gradcam:
        note("Grad-CAM grids left out (as asked)")
    else:
        note("no finished run, so no Grad-CAM grids")

    report.run_rows = [_run_row(r) for r in exp.runs]

    report.commands = [
        f"# lumbar {__version__}; run from the folder of the original config (its paths are "
        "relative to it)",
        f"lumbar experiment experiment.yaml --out {exp.folder.name}",
        f"lumbar report {exp.folder.name}",
    ]
    not_done = [r for r in exp.runs if r.status != DONE]
    if not_done:
        note(f"{len(not_done)} of {len(exp.runs)} runs have no test metrics; see the run list")
    return report
