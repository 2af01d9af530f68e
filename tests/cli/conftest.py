"""Fixtures the command tests share with the stages' tests (`helpers`)."""

from helpers.ingest_folder import ingest_dir
from helpers.pretrain import source_set, unlabelled_set

__all__ = ["ingest_dir", "source_set", "unlabelled_set"]
