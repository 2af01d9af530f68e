"""`lumbar experiment`: the paper's whole study (Procedures 1-3) as one resumable grid.

    >>> from lumbar.experiment import run_experiment
    >>> run_experiment(Path("configs/quick.yaml"), Path("exp"))  # doctest: +SKIP

Modules: `config` (the YAML), `plan` (runs, ids, dependencies, costs), `cache` (frozen-prefix
features shared between runs), `executor` (worker processes or Ray), `runner` (all of it).
"""

from lumbar.experiment.config import ExperimentConfig, load_experiment_config
from lumbar.experiment.plan import Plan, PretrainSpec, RunSpec, expand, format_plan
from lumbar.experiment.runner import ExperimentResult, run_experiment

__all__ = [
    "ExperimentConfig",
    "ExperimentResult",
    "Plan",
    "PretrainSpec",
    "RunSpec",
    "expand",
    "format_plan",
    "load_experiment_config",
    "run_experiment",
]
