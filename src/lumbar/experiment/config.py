"""The experiment config (`lumbar experiment CONFIG.yaml`): read, check, and resolve paths.

One YAML file declares the whole study, the paper's Procedures 1-3 as a grid:

    name: my-study
    seeds: [0, 1, 2]            # or folds: 5 (patient-grouped folds of train+val)
    train: {epochs: 50}         # TrainConfig overrides for every run
    datasets:
      main: {manifest: data/manifest.csv}          # or studies: + labels:, or synth: {...}
    pretrain:
      dataset_a: {kind: supervised, data: [brain/], config: {epochs: 100}}
      dataset_b: {kind: unlabelled, method: simclr, data: [pacs/]}
    procedures:
      - procedure: 1
        dataset: main
        backbones: [vgg16, vgg19, resnet50, mobilenet_v2]
        sources: [imagenet]
        modes: [frozen, finetune]
        rois: [none, grid]
        train: {unfreeze: 2}    # overrides for this block only

Paths are relative to the config file. Unknown keys are a one-line error listing the known ones,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lumbar.data.roi import parse_roi
from lumbar.data.splits import parse_ratios
from lumbar.data.targets import get_target
from lumbar.errors import UserError
from lumbar.models import list_backbones
from lumbar.pretrain.common import KIND_ALIASES
from lumbar.train import TrainConfig

__all__ = [
    "DatasetConfig",
    "ExperimentConfig",
    "GridBlock",
    "PretrainConfig",
    "load_experiment_config",
]

TOP_KEYS = ("name", "seeds", "folds", "fold_seed", "split", "train", "datasets", "pretrain",
            "procedures")  # fmt: skip
DATASET_KEYS = ("manifest", "studies", "labels", "synth", "lesions")
SYNTH_KEYS = ("patients", "seed")
PRETRAIN_KEYS = ("kind", "method", "data", "synth", "config")
PRETRAIN_SYNTH_KEYS = ("images", "seed")
BLOCK_KEYS = ("procedure", "dataset", "backbones", "sources", "modes", "rois", "targets",
              "seeds", "finetune_from_frozen", "train")  # fmt: skip
SPLIT_KEYS = ("ratios", "seed")
# grid dimensions: set by the grid, never through `train:`
GRID_FIELDS = ("manifest", "backbone", "weights", "mode", "roi", "target", "seed")
MODES = ("frozen", "finetune")
KINDS = ("supervised", "unlabelled")
BUILTIN_SOURCES = ("imagenet", "scratch")


@dataclass(frozen=True)
class DatasetConfig:
    """A target dataset: an existing manifest, studies + labels to ingest, or a phantom cohort."""

    name: str
    manifest: Path | None = None
    studies: Path | None = None
    labels: Path | None = None
    synth: dict[str, int] | None = None
    lesions: Path | None = None


@dataclass(frozen=True)
class PretrainConfig:
    """A pretraining source (the paper's Dataset A or B): one run per backbone that uses it."""

    name: str
    kind: str
    method: str | None
    data: tuple[Path, ...]
    synth: dict[str, int] | None
    config: dict[str, Any]


@dataclass(frozen=True)
class GridBlock:
    """One block of the grid: every combination of its lists is a run (per seed or fold)."""

    procedure: int
    dataset: str
    backbones: tuple[tuple[str, tuple[str, ...]], ...]  # (backbone, its sources)
    modes: tuple[str, ...]
    rois: tuple[str, ...]
    targets: tuple[str, ...]
    seeds: tuple[int, ...]
    finetune_from_frozen: bool
    train: dict[str, Any]


@dataclass(frozen=True)
class ExperimentConfig:
    """A checked experiment config with absolute paths."""

    path: Path
    name: str
    seeds: tuple[int, ...]
    folds: int
    fold_seed: int
    split_ratios: tuple[float, float, float]
    split_seed: int
    train: dict[str, Any]
    datasets: dict[str, DatasetConfig]
    pretrain: dict[str, PretrainConfig]
    blocks: tuple[GridBlock, ...] = field(default_factory=tuple)


def _check_keys(data: Any, known: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping of key: value, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return data


def _list(value: Any, where: str, kind: type = str) -> tuple[Any, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UserError(f"{where} must not be empty")
    for item in items:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise UserError(f"{where}: {item!r} is not a {kind.__name__}")
    return tuple(items)


def _int(value: Any, where: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def check_train_overrides(data: Any, where: str) -> dict[str, Any]:
    """`train:` overrides: TrainConfig fields other than the grid's own dimensions."""

    if data is None:
        return {}
    known = tuple(
        f.name for f in dataclasses.fields(TrainConfig) if f.name not in (*GRID_FIELDS, "extra")
    )
    if isinstance(data, dict):
        data = {str(k).replace("-", "_"): v for k, v in data.items()}
        grid = sorted(k for k in data if k in GRID_FIELDS)
        if grid:
            raise UserError(
                f"{where}: {', '.join(grid)} is set by the grid (datasets, backbones, sources, "
                "modes, rois, targets, seeds), not by train:"
            )
    return dict(_check_keys(data, known, where))


def _path(base: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise UserError(f"{where} must be a path, got {value!r}")
    return (base / Path(value).expanduser()).resolve()


def _dataset(name: str, data: Any, base: Path) -> DatasetConfig:
    where = f"datasets.{name}"
    data = _check_keys(data, DATASET_KEYS, where)
    given = [k for k in ("manifest", "studies", "synth") if k in data]
    if len(given) != 1:
        raise UserError(f"{where}: give exactly one of manifest:, studies: (+ labels:), synth:")
    synth = None
    if "synth" in data:
        synth = dict(_check_keys(data["synth"], SYNTH_KEYS, f"{where}.synth"))
        _int(synth.get("patients"), f"{where}.synth.patients", 1)
        synth["seed"] = _int(synth.get("seed", 0), f"{where}.synth.seed", 0)
    if "studies" in data and "labels" not in data:
        raise UserError(f"{where}: studies: needs labels: (a labels CSV or database URL)")
    if "labels" in data and "studies" not in data:
        raise UserError(f"{where}: labels: goes with studies:")
    labels = data.get("labels")
    labels_path = None
    if labels is not None:
        labels_path = Path(labels) if "://" in str(labels) else _path(base, labels, where)
    return DatasetConfig(
        name=name,
        manifest=_path(base, data["manifest"], f"{where}.manifest") if "manifest" in data else None,
        studies=_path(base, data["studies"], f"{where}.studies") if "studies" in data else None,
        labels=labels_path,
        synth=synth,
        lesions=_path(base, data["lesions"], f"{where}.lesions") if "lesions" in data else None,
    )


def _pretrain(name: str, data: Any, base: Path) -> PretrainConfig:
    where = f"pretrain.{name}"
    data = _check_keys(data, PRETRAIN_KEYS, where)
    kind = KIND_ALIASES.get(data.get("kind"), data.get("kind"))  # the old spelling still reads
    if kind not in KINDS:
        raise UserError(f"{where}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if ("data" in data) == ("synth" in data):
        raise UserError(f"{where}: give exactly one of data: (folders) or synth: {{images: N}}")
    synth = None
    paths: tuple[Path, ...] = ()
    if "synth" in data:
        synth = dict(_check_keys(data["synth"], PRETRAIN_SYNTH_KEYS, f"{where}.synth"))
        _int(synth.get("images"), f"{where}.synth.images", 4)
        synth["seed"] = _int(synth.get("seed", 0), f"{where}.synth.seed", 0)
    else:
        paths = tuple(_path(base, p, f"{where}.data") for p in _list(data["data"], where))
    method = data.get("method")
    if kind == "unlabelled":
        method = method or "simclr"
    elif method is not None:
        raise UserError(f"{where}: method: is for kind unlabelled only")
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise UserError(f"{where}.config must be a mapping of pretraining settings")
    reserved = sorted(k for k in config if k in ("data", "backbone", "method"))
    if reserved:
        raise UserError(f"{where}.config: {', '.join(reserved)} is set by the experiment")
    return PretrainConfig(name, kind, method, paths, synth, dict(config))


def _block(index: int, data: Any, top: dict[str, Any], cfg_names: set[str]) -> GridBlock:
    where = f"procedures[{index}]"
    data = _check_keys(data, BLOCK_KEYS, where)
    procedure = _int(data.get("procedure"), f"{where}.procedure", 1)
    datasets = top["datasets"]
    dataset = data.get("dataset", next(iter(datasets)) if len(datasets) == 1 else None)
    if dataset not in datasets:
        raise UserError(
            f"{where}.dataset must name one of datasets: {', '.join(datasets)}, got {dataset!r}"
        )
    sources = _list(data.get("sources", ["imagenet"]), f"{where}.sources")
    backbones: list[tuple[str, tuple[str, ...]]] = []
    raw = data.get("backbones")
    if raw is None:
        raise UserError(f"{where}: backbones: is required (one of {', '.join(list_backbones())})")
    for item in raw if isinstance(raw, list) else [raw]:
        own = sources
        if isinstance(item, dict):
            item = _check_keys(item, ("name", "sources"), f"{where}.backbones")
            own = _list(item.get("sources", list(sources)), f"{where}.backbones.sources")
            item = item.get("name")
        if item not in list_backbones():
            raise UserError(
                f"{where}: unknown backbone {item!r}; choose from {', '.join(list_backbones())}"
            )
        for source in own:
            if source not in BUILTIN_SOURCES and source not in cfg_names:
                known = ", ".join((*BUILTIN_SOURCES, *sorted(cfg_names)))
                raise UserError(f"{where}: unknown source {source!r}; known: {known}")
        backbones.append((item, tuple(own)))
    modes = _list(data.get("modes", list(MODES)), f"{where}.modes")
    for mode in modes:
        if mode not in MODES:
            raise UserError(f"{where}.modes: {mode!r} is not frozen or finetune")
    rois = _list(data.get("rois", ["none"]), f"{where}.rois")
    for roi in rois:
        try:
            parse_roi(roi)
        except (ValueError, UserError) as err:
            raise UserError(f"{where}.rois: {err}".splitlines()[0]) from None
    targets = _list(data.get("targets", ["disc_abnormal"]), f"{where}.targets")
    for target in targets:
        get_target(target)
    seeds = top["seeds"]
    if "seeds" in data:
        seeds = tuple(_int(s, f"{where}.seeds", 0) for s in _list(data["seeds"], where, int))
    finetune_from_frozen = data.get("finetune_from_frozen", True)
    if not isinstance(finetune_from_frozen, bool):
        raise UserError(f"{where}.finetune_from_frozen must be true or false")
    train = {**top["train"], **check_train_overrides(data.get("train"), f"{where}.train")}
    return GridBlock(
        procedure=procedure,
        dataset=str(dataset),
        backbones=tuple(backbones),
        modes=modes,
        rois=rois,
        targets=targets,
        seeds=seeds,
        finetune_from_frozen=finetune_from_frozen,
        train=train,
    )


def parse_experiment_config(data: Any, path: Path) -> ExperimentConfig:
    """Check a loaded config mapping; `path` is the file it came from (paths resolve there)."""

    base = Path(path).resolve().parent
    data = _check_keys(data, TOP_KEYS, Path(path).name)
    name = str(data.get("name") or Path(path).stem)
    if "seeds" in data and "folds" in data and not isinstance(data.get("seeds"), list):
        raise UserError("seeds: must be a list, e.g. [0, 1, 2]")
    seeds = tuple(_int(s, "seeds", 0) for s in _list(data.get("seeds", [0]), "seeds", int))
    folds = _int(data.get("folds", 0), "folds", 0)
    if folds == 1:
        raise UserError("folds: must be 0 (no cross-validation) or at least 2")
    split = _check_keys(data.get("split") or {}, SPLIT_KEYS, "split")
    ratios_value = split.get("ratios", [0.75, 0.15, 0.10])
    if isinstance(ratios_value, list):
        ratios_value = ",".join(str(r) for r in ratios_value)
    ratios = parse_ratios(str(ratios_value))
    raw_datasets = data.get("datasets")
    if not isinstance(raw_datasets, dict) or not raw_datasets:
        raise UserError("datasets: is required: name: {manifest: ...} (or studies:, or synth:)")
    datasets = {str(k): _dataset(str(k), v, base) for k, v in raw_datasets.items()}
    pretrain = {str(k): _pretrain(str(k), v, base) for k, v in (data.get("pretrain") or {}).items()}
    clash = sorted(set(pretrain) & set(BUILTIN_SOURCES))
    if clash:
        raise UserError(f"pretrain: {', '.join(clash)} is a built-in source name; rename it")
    train = check_train_overrides(data.get("train"), "train")
    top = {"datasets": datasets, "seeds": seeds, "train": train}
    raw_blocks = data.get("procedures")
    if not isinstance(raw_blocks, list) or not raw_blocks:
        raise UserError("procedures: is required: a list of grid blocks (procedure: 1, ...)")
    blocks = tuple(_block(i, b, top, set(pretrain)) for i, b in enumerate(raw_blocks))
    return ExperimentConfig(
        path=Path(path).resolve(),
        name=name,
        seeds=seeds,
        folds=folds,
        fold_seed=_int(data.get("fold_seed", 0), "fold_seed", 0),
        split_ratios=ratios,
        split_seed=_int(split.get("seed", 0), "split.seed", 0),
        train=train,
        datasets=datasets,
        pretrain=pretrain,
        blocks=blocks,
    )


def load_experiment_config(path: Path) -> ExperimentConfig:
    """Read and check an experiment YAML file.

    Raises:
        UserError: unreadable file or a bad value (one line naming the key).
    """

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read experiment config {path.name}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path.name} is not valid YAML: {err}".splitlines()[0]) from None
    return parse_experiment_config(data or {}, path)
