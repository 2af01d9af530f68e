"""Read an experiment folder (`lumbar experiment --out EXP`): the plan, each run and its state.

Nothing is invented: a run without test metrics is recorded with the reason (failed, not run,
interrupted, no test split), and the tables show it as missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lumbar import runs
from lumbar.errors import UserError

__all__ = [
    "DONE",
    "Experiment",
    "RunRecord",
    "load_experiment",
]

DONE = "done"
NO_TEST = "no test metrics"
FAILED = "failed"
INCOMPLETE = "incomplete"
NOT_RUN = "not run"


@dataclass
class RunRecord:
    """One planned run (its RunSpec) and what its folder holds."""

    spec: dict[str, Any]
    folder: Path
    status: str
    reason: str = ""
    metrics: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.spec.get("id", self.folder.name))

    @property
    def backbone(self) -> str:
        return str(self.spec.get("backbone", "?"))

    @property
    def source(self) -> str:
        return str(self.spec.get("source") or "imagenet")

    @property
    def mode(self) -> str:
        return str(self.spec.get("mode") or "frozen")

    @property
    def roi(self) -> str:
        return str(self.spec.get("roi") or "none")

    @property
    def roi_applied(self) -> bool:
        return self.roi != "none"

    @property
    def replicate(self) -> tuple[int, int]:
        """(fold, seed), for "the first seed's run" (fold -1 when there are no folds)."""
        fold = self.spec.get("fold")
        return (-1 if fold is None else int(fold), int(self.spec.get("seed") or 0))

    @property
    def test(self) -> dict[str, Any] | None:
        """The run's test metrics (`lumbar.train.evaluate.evaluate_run` output), if any."""
        if self.metrics is None:
            return None
        test = self.metrics.get("test")
        return test if isinstance(test, dict) and "f1" in test else None

    @property
    def seconds(self) -> float | None:
        value = (self.metrics or {}).get("seconds")
        return float(value) if isinstance(value, int | float) else None

    @property
    def epochs(self) -> int | None:
        """Planned epochs: the run's config, else its spec's overrides."""
        for source in ((self.config or {}).get("train") or {}, self.spec.get("train") or {}):
            if source.get("epochs") is not None:
                return int(source["epochs"])
        return None


@dataclass
class Experiment:
    """An experiment folder as read: its plan, config text, runs and pretraining runs."""

    folder: Path
    plan: dict[str, Any]
    config_text: str
    runs: list[RunRecord]
    pretrain: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return str(self.plan.get("name") or self.folder.name)

    def done(self) -> list[RunRecord]:
        """Runs with test metrics."""
        return [r for r in self.runs if r.status == DONE]

    def datasets(self) -> dict[str, dict[str, Any]]:
        """plan.json's datasets: name -> {"manifest", "studies", "labels", "ingest", "lesions"}."""
        found = self.plan.get("datasets") or {}
        return {str(k): dict(v or {}) for k, v in found.items()}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _failure_reason(folder: Path) -> str | None:
    """Why a job failed (the last line of its run.log), or None when it did not fail.

    The runner writes the log at the end, with the traceback when the job failed: a log
    without the DONE marker means the job failed.
    """
    log = folder / runs.LOG
    if runs.is_done(folder) or not log.is_file():
        return None
    try:
        lines = [ln.strip() for ln in log.read_text("utf-8", errors="replace").splitlines()]
    except OSError:
        lines = []
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else "failed (empty run.log)"


def read_run(spec: dict[str, Any], folder: Path) -> RunRecord:
    """The state of one planned run's folder."""
    record = RunRecord(spec=spec, folder=folder, status=NOT_RUN)
    if not folder.is_dir():
        record.reason = "no run folder"
        return record
    config = runs.read_json(folder, runs.CONFIG)
    record.config = config if isinstance(config, dict) else None
    record.metrics = runs.read_metrics(folder)
    if (folder / runs.HISTORY).is_file():
        try:
            record.history = runs.read_history(folder)
        except (OSError, ValueError, KeyError):
            record.history = []
    failure = _failure_reason(folder)
    if record.test is not None:
        record.status = DONE
    elif failure is not None:
        record.status, record.reason = FAILED, failure
    elif record.metrics is not None:
        record.status = NO_TEST
        record.reason = "training finished but the run has no test metrics (empty test split?)"
    else:
        record.status = INCOMPLETE
        record.reason = "interrupted or still running (no metrics.json)"
    return record


def load_experiment(exp_dir: Path) -> Experiment:
    """Read EXP/plan.json, EXP/experiment.yaml and every planned run and pretraining run.

    Raises:
        UserError: EXP is not an experiment folder (no readable plan.json).
    """
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise UserError(f"experiment folder {exp_dir} not found")
    plan = _read_json(exp_dir / "plan.json")
    if not isinstance(plan, dict):
        raise UserError(
            f"{exp_dir} is not an experiment folder: no readable plan.json "
            "(it is written by `lumbar experiment CONFIG --out EXP`)"
        )
    runs_spec = plan.get("runs")
    if not isinstance(runs_spec, list):
        raise UserError(f"{exp_dir}/plan.json has no 'runs' list")
    records = []
    for spec in runs_spec:
        if not isinstance(spec, dict) or "id" not in spec:
            raise UserError(f"{exp_dir}/plan.json: every run needs an object with an 'id'")
        records.append(read_run(spec, exp_dir / "runs" / str(spec["id"])))
    pretrain = []
    for spec in plan.get("pretrain") or []:
        folder = exp_dir / "pretrain" / str(spec.get("id", ""))
        metrics = runs.read_metrics(folder)
        if runs.is_done(folder):
            status = DONE
        elif _failure_reason(folder) is not None:
            status = FAILED
        elif folder.is_dir():
            status = INCOMPLETE
        else:
            status = NOT_RUN
        seconds = metrics.get("seconds") if isinstance(metrics, dict) else None
        pretrain.append({**spec, "status": status, "seconds": seconds})
    config_path = exp_dir / "experiment.yaml"
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    return Experiment(exp_dir, plan, config_text, records, pretrain)
