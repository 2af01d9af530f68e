"""`python -m lumbar.cli ...`, e.g. under `torchrun --nproc_per_node N -m lumbar.cli pretrain`."""

from lumbar.cli.app import main

main()
