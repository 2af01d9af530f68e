"""`lumbar train`, `evaluate` and `compare`: the paper's transfer learning (Procedure 1).

`loop` trains a classifier into a run folder (`lumbar.runs`), `runtime` holds what every
training loop needs at run time (processes, device, precision), and `evaluate` scores a run
with patient-bootstrap confidence intervals and compares two runs (Eq. 8).
"""

from lumbar.train.loop import (
    PrefixCache,
    TrainConfig,
    TrainResult,
    compute_prefix,
    extend_prefix,
    inverse_frequency_weights,
    load_config_file,
    train,
    weighted_step,
)

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
