"""Same-domain pretraining: the paper's Procedures 2 (supervised) and 3 (unlabelled).

- `pretrain_supervised`: a backbone trained on labelled class folders (the paper's Dataset A,
  brain-tumour MRI grouped into normal / abnormal), keeping the lowest validation loss.
- `pretrain_unlabelled`: a backbone trained on a folder tree of unlabelled MRI (Dataset B) with
  SimCLR contrastive learning (`lumbar.pretrain.ssl` documents the method and its settings).

Both stream files from disk (nothing is loaded up front), decode in DataLoader workers, run
under `torchrun` (DDP), resume from RUN/last.pt, and write a run folder that
`lumbar train --weights RUN` accepts: config.json ("backbone", "preprocessing", "pretrain")
and checkpoint.pt ({"model": trunk state dict}).

Example:
    >>> from lumbar.pretrain import SSLPretrainConfig, pretrain_unlabelled
    >>> cfg = SSLPretrainConfig(data=["mri/"], backbone="mobilenet_v2", input_size=96, epochs=20)
    >>> result = pretrain_unlabelled(cfg, Path("runs/ssl"))
    >>> # then: lumbar train --manifest ds/manifest.csv --backbone mobilenet_v2 --weights runs/ssl
"""

from lumbar.pretrain.common import PretrainResult
from lumbar.pretrain.files import ImageFiles, LabelledFiles, scan_images, scan_labelled
from lumbar.pretrain.ssl import METHODS, SSLPretrainConfig, pretrain_unlabelled
from lumbar.pretrain.supervised import SupervisedPretrainConfig, pretrain_supervised

__all__ = [
    "METHODS",
    "ImageFiles",
    "LabelledFiles",
    "PretrainResult",
    "SSLPretrainConfig",
    "SupervisedPretrainConfig",
    "pretrain_supervised",
    "pretrain_unlabelled",
    "scan_images",
    "scan_labelled",
]
