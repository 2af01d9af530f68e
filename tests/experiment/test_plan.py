"""Grid expansion: the paper's 16 + 16 runs, stable ids, dependencies, dry run writes nothing."""

from __future__ import annotations

from pathlib import Path

from helpers.experiment import write_config
from helpers.tiny_run import write_learnable_manifest

from lumbar.experiment import expand, load_experiment_config, run_experiment

ROOT = Path(__file__).resolve().parents[2]


def test_paper_config_has_the_papers_grid(tmp_path: Path) -> None:
    cfg = load_experiment_config(ROOT / "configs" / "paper.yaml")
    plan = expand(cfg, tmp_path / "exp")
    p1 = [r for r in plan.runs if r.procedure == 1]
    assert len({(r.backbone, r.mode, r.roi) for r in p1}) == 16  # 4 x 2 x 2
    assert len(p1) == 16 * len(cfg.seeds)
    assert {r.backbone for r in p1} == {"vgg16", "vgg19", "resnet50", "mobilenet_v2"}
    later = [r for r in plan.runs if r.procedure in (2, 3)]
    assert {(r.backbone, r.source, r.mode) for r in later} == {
        (b, s, m)
        for b in ("vgg16", "vgg19")
        for s in ("dataset_a", "dataset_b")
        for m in ("frozen", "finetune")
    }
    assert {p.id for p in plan.pretrain} == {
        "dataset_a-vgg16", "dataset_a-vgg19", "dataset_b-vgg16", "dataset_b-vgg19",
    }  # fmt: skip
    assert "p1-vgg16-imagenet-finetune-roi-s0" in {r.id for r in plan.runs}
    # ids are stable, unique, and every dependency comes first
    again = expand(load_experiment_config(ROOT / "configs" / "paper.yaml"), tmp_path / "exp")
    assert [r.id for r in again.runs] == [r.id for r in plan.runs]
    assert len({r.id for r in plan.runs}) == len(plan.runs)
    order = [p.id for p in plan.pretrain] + [r.id for r in plan.runs]
    for run in plan.runs:
        assert all(order.index(a) < order.index(run.id) for a in run.after)
        if run.mode == "finetune":
            assert run.init_from == run.id.replace("-finetune-", "-frozen-")
        if run.source == "dataset_b":
            assert run.weights == f"pretrain:dataset_b-{run.backbone}"
    # the cache makes the grid far cheaper than the naive loop
    assert plan.naive_cost > 10 * sum(r.cost for r in plan.runs)


def test_folds_make_one_run_per_fold(tmp_path: Path) -> None:
    manifest = write_learnable_manifest(tmp_path / "data")
    config = write_config(
        tmp_path / "exp.yaml",
        f"folds: 3\ndatasets: {{main: {{manifest: {manifest}}}}}\n"
        "procedures: [{procedure: 1, backbones: [mobilenet_v2], modes: [frozen]}]\n",
    )
    plan = expand(load_experiment_config(config), tmp_path / "exp")
    assert [r.id for r in plan.runs] == [
        f"p1-mobilenet_v2-imagenet-frozen-noroi-f{k}" for k in range(3)
    ]
    assert len({r.manifest for r in plan.runs}) == 3


def test_dry_run_lists_runs_and_writes_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    out = tmp_path / "exp"
    result = run_experiment(ROOT / "configs" / "paper.yaml", out, dry_run=True, echo=lines.append)
    assert not out.exists()
    text = "\n".join(lines)
    assert "p1-resnet50-imagenet-frozen-noroi-s0" in text
    assert "naive" in text and "total estimate" in text
    assert len(result.plan.runs) >= 16
