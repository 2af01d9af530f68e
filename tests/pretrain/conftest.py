"""Fixtures: phantom source and unlabelled image sets, a phantom manifest (`helpers.pretrain`)."""

from helpers.pretrain import phantom_manifest, source_set, unlabelled_set

__all__ = ["phantom_manifest", "source_set", "unlabelled_set"]
