"""Fixtures for the model tests: fake "ImageNet" weights in a private torch hub cache.

No test here touches the network: the hub cache is redirected to a temporary folder, and the
ImageNet entries of the registry are pointed at files the tests write themselves.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from lumbar.models import _registry, get_backbone_spec


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These tests run tiny tensors on a shared 2-core machine: one intra-op thread is faster
    there than two spinning OpenMP threads. Restored afterwards for other test folders."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fake_imagenet(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[Path, dict[str, torch.Tensor]]]:
    """Make `name`'s "ImageNet" weights a random state dict, registered with its real SHA-256.

    Returns a function `make(name, *, in_cache=True)` giving (file path, state dict): with
    `in_cache` the file is put in the hub cache, else beside it (to be served for download).
    """

    def make(name: str, *, in_cache: bool = True) -> tuple[Path, dict[str, torch.Tensor]]:
        spec = get_backbone_spec(name)
        torch.manual_seed(0)
        state = spec.builder(num_classes=1000).state_dict()
        folder = torch_home if in_cache else torch_home.parent / "served"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / spec.imagenet.file_name
        torch.save(state, path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        weights = dataclasses.replace(spec.imagenet, sha256=digest)
        monkeypatch.setitem(_registry._REGISTRY, name, dataclasses.replace(spec, imagenet=weights))
        return path, state

    return make
