"""`lumbar train`, `evaluate` and `compare`: the paper's transfer learning (Procedure 1).

`config` holds a run's settings (`TrainConfig`), `loop` trains a classifier into a run folder
(`lumbar.runs`) in named steps, `steps` holds the steps every training loop shares (the
pretraining loops too), `prefix` the frozen-prefix cache, `runtime` processes, device and
precision, and `evaluate` scores a run with patient-bootstrap confidence intervals and compares
two runs (Eq. 8).
"""

from lumbar.train.config import TrainConfig, load_config_file
from lumbar.train.loop import TrainResult, train
from lumbar.train.prefix import PrefixCache, compute_prefix, extend_prefix
from lumbar.train.steps import inverse_frequency_weights, weighted_step

__all__ = [
    "PrefixCache",
    "TrainConfig",
    "TrainResult",
    "compute_prefix",
    "extend_prefix",
    "inverse_frequency_weights",
    "load_config_file",
    "train",
    "weighted_step",
]
