"""Frozen-prefix feature caches on disk, shared between the runs of an experiment.

`lumbar.train.train` computes the output of a run's frozen leading stages once per image and
augmentation variant. Runs of a grid often compute the very same tensor: the frozen and
fine-tuned twins of a backbone (the fine-tuned one starts from the frozen run, whose trunk is
unchanged), every target on the same images, reruns after a kill. `DiskPrefixCache` stores
each tensor under EXP/cache/<key>.pt, where the key hashes everything the tensor depends on:

- the images: manifest bytes, the split's image paths, labels, ROI, preprocessing (input size,
  normalisation), augmentation, seed and variant count (seed and augmentation only when the
  split is augmented, so validation caches are shared across seeds);
- the function: backbone, the state (weights and BatchNorm statistics) of the cached stages,
  the stop stage, the pooling applied after them;
- the arithmetic: precision, memory layout, batch size, device and CPU capability.

A frozen run's cache (the whole trunk, pooled) is one step deeper than its fine-tuned twin's
(the trunk up to the unfrozen layers). With `keep_stops`, the frozen run stores the shallower
tensor on its way and derives its own from it (`lumbar.train.extend_prefix`); a run whose
exact tensor is missing but whose shallower one exists derives it the same way. Either way
the numbers are those the run would compute itself (a test checks this).

Files are written atomically; a lock per key makes concurrent workers compute it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lumbar.files import atomic_path, write_json_atomic

__all__ = ["DiskPrefixCache"]


class DiskPrefixCache:
    """A `lumbar.train.PrefixCache` keeping tensors in `root` (EXP/cache/).

    Args:
        root: the cache folder (created on first write).
        keep_stops: per backbone, shallower stop stages to store on the way to a deeper one
            (the fine-tuned twins' prefixes).
        log: called with one line per hit, derivation or fill.
    """

    def __init__(
        self,
        root: Path,
        keep_stops: Mapping[str, list[int]] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.keep_stops = {k: sorted(set(v)) for k, v in (keep_stops or {}).items()}
        self.say = log or (lambda message: None)
        self.hits = self.fills = self.derived = 0

    # ------------------------------------------------------------------ keys

    @staticmethod
    def _stage_digests(model: Any, stop: int) -> list[str]:
        digests = []
        for name, stage in model.stages()[:stop]:
            h = hashlib.sha256(name.encode())
            for key, tensor in stage.state_dict().items():
                h.update(key.encode())
                h.update(str(tuple(tensor.shape)).encode())
                h.update(str(tensor.dtype).encode())
                h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
            digests.append(h.hexdigest())
        return digests

    @staticmethod
    def _data_digest(dataset: Any, settings: Mapping[str, Any], variants: int) -> str:
        info = dataset.describe()
        augmented = dataset.augmentation is not None
        if not augmented:
            info.pop("seed", None)
        manifest_path = Path(dataset.manifest.path)
        h = hashlib.sha256()
        with contextlib.suppress(OSError):
            h.update(manifest_path.read_bytes())
        h.update("\n".join(str(p) for p in dataset.paths).encode())
        h.update(dataset.labels.tobytes())
        h.update(json.dumps(info, sort_keys=True, default=str).encode())
        h.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
        h.update(f"variants={variants if augmented else 1}".encode())
        h.update(torch.backends.cpu.get_cpu_capability().encode())
        return h.hexdigest()

    @staticmethod
    def _key(backbone: str, data: str, stages: list[str], stop: int, pool: nn.Module | None) -> str:
        h = hashlib.sha256()
        h.update(f"{backbone}|{stop}|{pool!r}|{data}".encode())
        for digest in stages[:stop]:
            h.update(digest.encode())
        return f"{backbone}-{stop}{'p' if pool is not None else ''}-{h.hexdigest()[:24]}"

    # ------------------------------------------------------------------ storage

    def _file(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def _load(self, key: str) -> torch.Tensor | None:
        path = self._file(key)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (OSError, RuntimeError, EOFError):
            return None  # unreadable (e.g. a disk filled up mid-write elsewhere): recompute

    def _store(self, key: str, tensor: torch.Tensor, about: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._file(key)) as tmp:
            torch.save(tensor.contiguous(), tmp)
        write_json_atomic(self.root / f"{key}.json", about, default=str)

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock, at worst computed twice
            yield
            return
        with open(self.root / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ the hook

    def fetch(
        self,
        model: Any,
        dataset: Any,
        *,
        stop: int,
        pool: nn.Module | None,
        variants: int,
        settings: dict[str, Any],
        compute: Callable[[int, nn.Module | None], torch.Tensor],
        extend: Callable[[torch.Tensor, int, int, nn.Module | None], torch.Tensor],
    ) -> torch.Tensor:
        """The run's prefix tensor: loaded, derived from a shallower one, or computed."""
        backbone = model.spec.name
        stages = self._stage_digests(model, stop)
        data = self._data_digest(dataset, settings, variants)
        key = self._key(backbone, data, stages, stop, pool)
        about = {"backbone": backbone, "stop": stop, "pooled": pool is not None,
                 "images": len(dataset), "variants": variants,
                 "data": dataset.describe(), "settings": settings}  # fmt: skip
        with self._lock(key):
            found = self._load(key)
            if found is not None:
                self.hits += 1
                self.say(f"prefix cache hit {key}")
                return found
            # a shallower prefix of the same images and trunk, stored by another run
            for start in range(stop - 1, 0, -1):
                base = self._load(self._key(backbone, data, stages, start, None))
                if base is not None:
                    tensor = extend(base, start, stop, pool)
                    self._store(key, tensor, about)
                    self.derived += 1
                    self.say(f"prefix cache {key} derived from stage {start}")
                    return tensor
            keep = [s for s in self.keep_stops.get(backbone, []) if 0 < s < stop]
            if keep:
                start = keep[-1]
                shallow_key = self._key(backbone, data, stages, start, None)
                base = compute(start, None)
                self._store(shallow_key, base, {**about, "stop": start, "pooled": False})
                tensor = extend(base, start, stop, pool)
            else:
                tensor = compute(stop, pool)
            self._store(key, tensor, about)
            self.fills += 1
            self.say(f"prefix cache filled {key}")
            return tensor
