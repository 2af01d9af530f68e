"""`run_experiment`: config -> datasets -> pretraining -> the grid of runs -> the report.

The experiment folder (layout in the report's contract):

    EXP/experiment.yaml     the config as given
    EXP/plan.json           datasets, pretraining runs and runs (ids, settings, costs)
    EXP/sources/<name>/     phantom studies and ingest output of built datasets
    EXP/datasets/<name>/    built or split manifests (folds/fold-K/ with `folds:`)
    EXP/pretrain-data/<n>/  phantom pretraining sets (`synth:` in a pretrain entry)
    EXP/pretrain/<id>/      pretraining runs;  EXP/runs/<id>/  training runs (+ spec.json, DONE)
    EXP/cache/              frozen-prefix feature caches shared by the runs

Everything is resumable: rerunning the same command skips what is DONE.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lumbar import runs
from lumbar.data.build import build_dataset
from lumbar.data.manifest import read_manifest, write_manifest
from lumbar.data.splits import apply_split, assign_folds
from lumbar.data.targets import get_target
from lumbar.errors import UserError
from lumbar.experiment.config import DatasetConfig, ExperimentConfig, load_experiment_config
from lumbar.experiment.executor import JobResult, schedule
from lumbar.experiment.plan import (
    Plan,
    expand,
    fold_manifest,
    format_duration,
    format_plan,
    frozen_stop,
)
from lumbar.files import write_text_atomic
from lumbar.ingest import IngestOptions, ingest
from lumbar.report import write_report
from lumbar.synth import synthesize_cohort
from lumbar.synth.sets import synthesize_source_set, synthesize_unlabelled_set

__all__ = ["ExperimentResult", "run_experiment"]


@dataclass
class ExperimentResult:
    """What `run_experiment` did: the plan, each job's result, and the wall time."""

    out: Path
    plan: Plan
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0
    report: Path | None = None

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results if r.status in ("failed", "blocked")]


def _duration(seconds: float) -> str:
    """Compact, for progress lines: "12s", "3.5min", "2.1h"."""
    return format_duration(seconds, sep="")


# --------------------------------------------------------------------------- datasets


def _build_dataset(exp: Path, ds: DatasetConfig, cfg: ExperimentConfig, say: Any) -> None:
    """Make EXP/datasets/<name>/manifest.csv (phantom -> ingest -> build, or a split)."""

    out = exp / "datasets" / ds.name
    if (out / "manifest.csv").is_file():
        return
    ratios = cfg.split_ratios
    if ds.manifest is not None:  # a manifest without a split column: split a copy
        manifest = read_manifest(ds.manifest, check_splits=False)
        result, warnings = apply_split(manifest, ratios=ratios, seed=cfg.split_seed)
        for warning in warnings:
            say(f"warning: {ds.name}: {warning}")
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(result, out / "manifest.csv")
        return
    sources = exp / "sources" / ds.name
    studies, labels = ds.studies, str(ds.labels) if ds.labels else None
    if ds.synth is not None:
        studies = sources / "studies"
        labels = str(studies / "labels.csv")
        if not (studies / "labels.csv").is_file():
            say(f"dataset {ds.name}: {ds.synth['patients']} phantom patients")
            synthesize_cohort(
                studies, patients=int(ds.synth["patients"]), seed=int(ds.synth["seed"]),
                force=True, progress=False,
            )  # fmt: skip
    assert studies is not None and labels is not None

    say(f"dataset {ds.name}: ingest (the paper's 8 images per patient)")
    ingest(studies, sources / "ingest", IngestOptions())
    build_dataset(sources / "ingest", labels, out, ratios=ratios, seed=cfg.split_seed, force=True)


def _build_folds(exp: Path, plan: Plan, cfg: ExperimentConfig) -> None:
    """Fold K's manifest: fold K is the validation split, the other folds train, test stays."""

    for name in sorted({r.dataset for r in plan.runs}):
        base = read_manifest(Path(plan.datasets[name]["manifest"] or ""))
        target = next(r.target for r in plan.runs if r.dataset == name)
        splits = base.column("split")
        folds = assign_folds(base, get_target(target), cfg.folds, cfg.fold_seed, splits)
        for k in range(cfg.folds):
            path = fold_manifest(exp, name, k)
            if path.is_file():
                continue
            new = [
                s if f == "" else ("val" if f == str(k) else "train")
                for s, f in zip(splits, folds, strict=True)
            ]
            path.parent.mkdir(parents=True, exist_ok=True)
            write_manifest(base.with_column("split", new), path)


def _make_pretrain_data(exp: Path, cfg: ExperimentConfig, plan: Plan, say: Any) -> None:
    for name in sorted({p.name for p in plan.pretrain}):
        pc = cfg.pretrain[name]
        folder = exp / "pretrain-data" / name
        if pc.synth is None or folder.is_dir():
            continue
        say(f"pretraining set {name}: {pc.synth['images']} phantom images")
        make = synthesize_source_set if pc.kind == "supervised" else synthesize_unlabelled_set
        make(folder, images=int(pc.synth["images"]), seed=int(pc.synth["seed"]), force=True)


# --------------------------------------------------------------------------- the run


def _check_folder(exp: Path, plan: Plan) -> None:
    """A DONE run made with other settings would be silently reused: refuse instead."""
    keys = ("procedure", "dataset", "backbone", "weights", "source", "mode", "roi", "target",
            "seed", "fold", "train", "init_from", "manifest")  # fmt: skip
    for run in plan.runs:
        old = runs.read_json(exp / "runs" / run.id, runs.SPEC)
        if not runs.is_done(exp / "runs" / run.id) or not isinstance(old, dict):
            continue
        new = run.to_dict()
        changed = [k for k in keys if old.get(k) != new.get(k)]
        if changed:
            raise UserError(
                f"run {run.id} in {exp.name} was made with other settings "
                f"({', '.join(changed)}); use a new experiment folder, or delete "
                f"runs/{run.id} to redo it",
                option="out",
            )


def _keep_stops(plan: Plan) -> dict[str, list[int]]:
    """Per backbone, the fine-tuned runs' cache stops (frozen twins store them on the way)."""
    stops: dict[str, set[int]] = {}
    for run in plan.runs:
        if run.mode == "finetune" and run.train.get("cache_features", True):
            stop = frozen_stop(
                run.backbone, "finetune", int(run.train.get("unfreeze", 1)),
                str(run.train.get("unfreeze_unit", "block")),
            )  # fmt: skip
            stops.setdefault(run.backbone, set()).add(stop)
    return {k: sorted(v) for k, v in stops.items()}


def _jobs(plan: Plan) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = [
        {**p.to_dict(), "type": "pretrain", "after": []} for p in plan.pretrain
    ]
    jobs += [{**r.to_dict(), "type": "run"} for r in plan.runs]
    return jobs


class _Reporter:
    """One line per finished job: what, how long, elapsed, and an estimate of what remains."""

    def __init__(self, plan: Plan, workers: int, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.workers = max(1, workers)
        self.total = len(plan.pretrain) + len(plan.runs)
        self.costs = {p.id: p.cost for p in plan.pretrain} | {r.id: r.cost for r in plan.runs}
        self.left = dict(self.costs)
        self.started = time.perf_counter()
        self.finished = 0
        self.measured = self.estimated = 0.0

    def __call__(self, result: JobResult, job: dict[str, Any]) -> None:
        self.finished += 1
        cost = self.left.pop(result.id, 0.0)
        if result.status == "done":
            self.measured += result.seconds
            self.estimated += cost
        elapsed = time.perf_counter() - self.started
        scale = self.measured / self.estimated if self.estimated > 0 else 1.0
        remaining = sum(self.left.values()) * scale / self.workers
        what = {
            "done": f"done in {_duration(result.seconds)}"
            + (f" ({result.summary})" if result.summary else ""),
            "skipped": "already done",
            "failed": f"FAILED: {result.error}",
            "blocked": f"not run: {result.error}",
        }[result.status]
        self.echo(
            f"[{self.finished}/{self.total}] {result.id}: {what} | elapsed {_duration(elapsed)}"
            + (f", about {_duration(remaining)} left" if self.left else "")
        )


def run_experiment(
    config_path: Path,
    out: Path,
    *,
    executor: str = "local",
    workers: int = 0,
    address: str | None = None,
    dry_run: bool = False,
    progress: bool = True,
    report: bool = True,
    echo: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Run the experiment `config_path` into the folder `out`; resumable.

    Args:
        config_path: the experiment YAML.
        out: the experiment folder (created; rerunning continues it).
        executor: "local" (worker processes) or "ray" (tasks on a Ray cluster).
        workers: jobs at a time (0: one per two cores locally, one per 2 CPUs on Ray).
        address: the Ray cluster (`ray.init(address=...)`); None starts a local Ray.
        dry_run: print the plan with its cost estimate and write nothing.
        progress: print one line per finished job (and the preparation steps).
        report: write EXP/report.html at the end (`lumbar.report.write_report`).
        echo: where lines go (default print).

    Raises:
        UserError: a bad config, or an experiment folder made with other settings.
    """
    say = echo or print
    note = say if progress else (lambda message: None)
    if executor not in ("local", "ray"):
        raise UserError(f"executor must be local or ray, got {executor!r}", option="executor")
    if workers < 0:
        raise UserError(f"workers must be 0 (automatic) or more, got {workers}", option="workers")
    cores = os.cpu_count() or 1
    workers = workers or max(1, cores // 2)
    cfg = load_experiment_config(config_path)
    out = Path(out)
    threads = max(1, cores // workers)
    plan = expand(cfg, out, threads=threads)
    if dry_run:
        say(format_plan(plan, workers))
        return ExperimentResult(out, plan)
    started = time.perf_counter()
    if out.exists() and not out.is_dir():
        raise UserError(f"experiment folder {out} is a file; give a folder", option="out")
    old_config = out / "experiment.yaml"
    if out.is_dir() and any(out.iterdir()) and not old_config.is_file():
        raise UserError(
            f"experiment folder {out.name} is not empty and holds no experiment; choose another",
            option="out",
        )
    _check_folder(out, plan)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cfg.path, out / ".experiment.yaml.tmp")
    os.replace(out / ".experiment.yaml.tmp", old_config)

    for name in sorted({r.dataset for r in plan.runs}):
        _build_dataset(out, cfg.datasets[name], cfg, note)
    plan = expand(cfg, out, threads=threads)  # image counts of the built datasets
    if cfg.folds:
        _build_folds(out, plan, cfg)
    _make_pretrain_data(out, cfg, plan, note)
    document = {"created": datetime.now(UTC).isoformat(timespec="seconds"), **plan.to_dict()}
    write_text_atomic(out / "plan.json", json.dumps(document, indent=2) + "\n")
    note(
        f"{len(plan.pretrain)} pretraining runs and {len(plan.runs)} runs, "
        f"estimated {_duration(plan.cost)} on one worker; {workers} worker(s) x {threads} "
        f"thread(s) ({executor})"
    )
    reporter = _Reporter(plan, workers, note)
    results = schedule(
        out, _jobs(plan), executor=executor, workers=workers, address=address,
        keep_stops=_keep_stops(plan), on_result=reporter,
    )  # fmt: skip
    result = ExperimentResult(out, plan, results, time.perf_counter() - started)
    if report:
        written = write_report(out)  # (report.html, report.md)
        result.report = Path(written[0] if isinstance(written, tuple | list) else written)
    done = sum(r.status in ("done", "skipped") for r in results)
    note(
        f"{done}/{len(results)} jobs done, {len(result.failed)} failed or not run, "
        f"in {_duration(result.seconds)}"
    )
    return result
