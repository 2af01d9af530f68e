"""Running the plan's jobs: in parallel worker processes, or as tasks on a Ray cluster.

A job is a pretraining run or a training run. `run_job` does one, in whatever process it is
given; it is resumable: a folder with a DONE marker is skipped, a folder without one (killed
mid-way) is resumed from its last.pt when it has one, else started again. The schedulers
start a job once every job it depends on is DONE, keep `workers` jobs running, and report
a failing job without stopping the others; the jobs that depend on it are skipped.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumbar import pretrain, runs
from lumbar.errors import UserError
from lumbar.experiment.cache import DiskPrefixCache
from lumbar.train import TrainConfig, train

__all__ = ["JobResult", "run_job", "schedule"]


@dataclass
class JobResult:
    """What became of one job."""

    id: str
    status: str  # "done", "skipped" (already DONE), "failed", "blocked" (a dependency failed)
    seconds: float = 0.0
    error: str = ""
    summary: str = ""


def job_dir(exp: Path, job: Mapping[str, Any]) -> Path:
    """EXP/pretrain/<id>/ or EXP/runs/<id>/."""
    return Path(exp) / ("pretrain" if job["type"] == "pretrain" else "runs") / job["id"]


def _fresh_or_resume(run_dir: Path) -> bool:
    """True to resume `run_dir`; clears a folder killed before its first epoch finished."""
    if runs.resumable(run_dir):
        return True
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return False


def _weights(exp: Path, spec: Mapping[str, Any]) -> str:
    if spec.get("init_from"):
        return str(Path(exp) / "runs" / spec["init_from"])
    weights = str(spec["weights"])
    if weights.startswith("pretrain:"):
        return str(Path(exp) / "pretrain" / weights.split(":", 1)[1])
    return weights


def _run_train(exp: Path, spec: dict[str, Any], threads: int, keep_stops: dict, say: Any) -> str:
    run_dir = job_dir(exp, spec)
    resume = _fresh_or_resume(run_dir)
    settings = dict(spec["train"])
    settings.setdefault("threads", threads)
    config = TrainConfig(
        manifest=spec["manifest"],
        target=spec["target"],
        backbone=spec["backbone"],
        weights=_weights(exp, spec),
        mode=spec["mode"],
        roi=spec["roi"],
        seed=int(spec["seed"]),
        **settings,
    )
    cache = DiskPrefixCache(Path(exp) / "cache", keep_stops=keep_stops, log=say)
    result = train(config, run_dir, resume=resume, progress=False, log=say, prefix_cache=cache)
    f1 = result.metrics.get("test", {}).get("f1")
    return f"best epoch {result.best_epoch}" + (f", test F1 {f1:.3f}" if f1 is not None else "")


def _run_pretrain(exp: Path, spec: dict[str, Any], threads: int, say: Any) -> str:
    run_dir = job_dir(exp, spec)
    resume = _fresh_or_resume(run_dir)
    settings = dict(spec["config"])
    if "threads" not in settings:
        settings["threads"] = threads
    if spec["kind"] == "supervised":
        config: Any = pretrain.SupervisedPretrainConfig(
            data=list(spec["data"]), backbone=spec["backbone"], **settings
        )
        result = pretrain.pretrain_supervised(
            config, run_dir, resume=resume, progress=False, log=say
        )
    else:
        config = pretrain.SSLPretrainConfig(
            data=list(spec["data"]), backbone=spec["backbone"], method=spec["method"], **settings
        )
        result = pretrain.pretrain_unlabelled(
            config, run_dir, resume=resume, progress=False, log=say
        )
    return f"{result.images} images, best epoch {result.best_epoch}"


def run_job(
    exp: str, job: dict[str, Any], threads: int, keep_stops: dict[str, list[int]]
) -> JobResult:
    """Do one job (a plan entry plus "type": "pretrain" | "run") and mark it DONE.

    Never raises: a failure comes back as a `JobResult` with the error's last line (the full
    traceback goes to the job folder's run.log).
    """
    import torch

    started = time.perf_counter()
    exp_dir = Path(exp)
    run_dir = job_dir(exp_dir, job)
    if runs.is_done(run_dir):
        return JobResult(job["id"], "skipped")
    torch.set_num_threads(max(1, threads))
    lines: list[str] = []
    say = lines.append
    try:
        if job["type"] == "pretrain":
            summary = _run_pretrain(exp_dir, job, threads, say)
        else:
            summary = _run_train(exp_dir, job, threads, keep_stops, say)
        runs.mark_done(run_dir, {k: v for k, v in job.items() if k != "type"}, lines)
        return JobResult(job["id"], "done", time.perf_counter() - started, summary=summary)
    except Exception as err:  # one failing run never stops the others
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        if run_dir.exists():
            runs.write_log(run_dir, "\n".join(lines) + "\n" + traceback.format_exc())
        return JobResult(
            job["id"], "failed", time.perf_counter() - started, message.splitlines()[0][:300]
        )


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class _LocalPool:
    """Worker processes (spawned: no torch state shared with the parent)."""

    def __init__(self, workers: int) -> None:
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        self.threads = _threads_per_worker(workers)

    def submit(self, exp: str, job: dict[str, Any], keep_stops: dict) -> Any:
        return self.pool.submit(run_job, exp, job, self.threads, keep_stops)

    def wait(self, handles: list[Any]) -> list[tuple[Any, JobResult]]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        return [(h, self._result(h)) for h in done]

    @staticmethod
    def _result(handle: Any) -> JobResult:
        try:
            return handle.result()
        except Exception as err:  # a worker that died (e.g. out of memory)
            return JobResult("?", "failed", error=f"worker process died: {err}"[:300])

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _RayPool:
    """One `ray.remote` task per job, `num_cpus` each, on the cluster at `address`."""

    def __init__(self, workers: int, address: str | None, threads: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError(
                "the ray executor needs Ray: pip install 'lumbar[ray]' (on every node)"
            ) from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.threads = threads or max(1, cpus // max(1, workers))
        self.remote = ray.remote(num_cpus=self.threads, max_retries=0)(run_job)

    def submit(self, exp: str, job: dict[str, Any], keep_stops: dict) -> Any:
        return self.remote.remote(exp, job, self.threads, keep_stops)

    def wait(self, handles: list[Any]) -> list[tuple[Any, JobResult]]:
        done, _ = self.ray.wait(handles, num_returns=1)
        out = []
        for h in done:
            try:
                out.append((h, self.ray.get(h)))
            except Exception as err:  # a task whose worker died
                out.append((h, JobResult("?", "failed", error=f"Ray task failed: {err}"[:300])))
        return out

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def schedule(
    exp: Path,
    jobs: list[dict[str, Any]],
    *,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    keep_stops: dict[str, list[int]] | None = None,
    on_result: Callable[[JobResult, dict[str, Any]], None] | None = None,
) -> list[JobResult]:
    """Run `jobs` (each with "id", "type" and "after": ids it needs) respecting dependencies.

    Jobs already DONE are reported as skipped without starting a process. Returns one result
    per job, in the order they finished.
    """
    exp_str = str(Path(exp).resolve())
    keep = dict(keep_stops or {})
    notify = on_result or (lambda result, job: None)
    by_id = {job["id"]: job for job in jobs}
    results: list[JobResult] = []
    status: dict[str, str] = {}
    pending = []
    for job in jobs:
        if runs.is_done(job_dir(Path(exp), job)):
            status[job["id"]] = "skipped"
            result = JobResult(job["id"], "skipped")
            results.append(result)
            notify(result, job)
        else:
            pending.append(job)
    if not pending:
        return results
    pool: Any = _LocalPool(workers) if executor == "local" else _RayPool(workers, address)
    running: dict[Any, str] = {}
    try:
        while pending or running:
            for job in list(pending):
                needs = [status.get(a) for a in job.get("after", [])]
                if any(s in ("failed", "blocked") for s in needs):
                    pending.remove(job)
                    status[job["id"]] = "blocked"
                    failed = [a for a in job["after"] if status.get(a) in ("failed", "blocked")]
                    result = JobResult(job["id"], "blocked", error=f"needs {', '.join(failed)}")
                    results.append(result)
                    notify(result, job)
                elif all(s in ("done", "skipped") for s in needs) and len(running) < workers:
                    pending.remove(job)
                    running[pool.submit(exp_str, job, keep)] = job["id"]
            if not running:
                for job in pending:  # waiting on something no job provides
                    status[job["id"]] = "blocked"
                    result = JobResult(job["id"], "blocked", error="unknown dependency")
                    results.append(result)
                    notify(result, job)
                pending = []
                continue
            for handle, result in pool.wait(list(running)):
                job_id = running.pop(handle)
                result.id = job_id
                status[job_id] = result.status
                results.append(result)
                notify(result, by_id[job_id])
    finally:
        pool.close()
    return results
