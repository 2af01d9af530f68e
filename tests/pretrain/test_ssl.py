"""`pretrain_unlabelled` (Procedure 3, SimCLR): loss, run folder, unreadable files, resume, DDP."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers.pretrain import SIZE, tiny_config, torchrun_pretrain, train_from

from lumbar.errors import UserError
from lumbar.models import build_classifier
from lumbar.models.weights import read_weights_file
from lumbar.pretrain import SSLPretrainConfig, pretrain_unlabelled
from lumbar.pretrain.ssl import nt_xent


def tiny(data: Path, **overrides: object) -> SSLPretrainConfig:
    return tiny_config(SSLPretrainConfig, data, **overrides)


def test_nt_xent_rewards_matching_views() -> None:
    torch.manual_seed(0)
    z = torch.randn(16, 32)
    matched, accuracy = nt_xent(z, z + 0.01 * torch.randn(16, 32), 0.2)
    assert accuracy == 1.0
    random, _ = nt_xent(z, torch.randn(16, 32), 0.2)
    assert float(matched) < 0.5 * float(random)
    flat, _ = nt_xent(torch.ones(4, 8), torch.ones(4, 8), 0.2)  # all alike: log(2N - 1)
    assert float(flat) == pytest.approx(math.log(7), rel=1e-5)


@pytest.fixture(scope="module")
def data_with_a_broken_file(unlabelled_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ssl-data") / "B"
    shutil.copytree(unlabelled_set, root)
    (root / "batch-000" / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


@pytest.fixture(scope="module")
def run(data_with_a_broken_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ssl") / "run"
    notes: list[str] = []
    result = pretrain_unlabelled(
        tiny(data_with_a_broken_file), out, progress=False, log=notes.append
    )
    assert result.images == 16 and len(result.history) == 2
    assert notes == ["warning: skipped 1 unreadable file(s) of 17 (not images, or damaged)"]
    return out


def test_run_folder_records_method_and_keeps_only_the_trunk(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    assert config["pretrain"]["kind"] == "unlabelled" and config["pretrain"]["method"] == "simclr"
    assert config["pretrain"]["hyperparameters"]["temperature"] == 0.2
    assert config["pretrain"]["hyperparameters"]["views"]["crop_scale"] == [0.35, 1.0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["unreadable"] == 1 and metrics["best_epoch"] == 2
    assert math.isfinite(metrics["final_loss"])
    state = read_weights_file(run / "checkpoint.pt")
    assert all(k.startswith("backbone.") for k in state)  # the projection MLP is discarded
    model = build_classifier("mobilenet_v2", 2, run, hidden=16)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[f"backbone.{key}"]), key


def test_training_changes_the_trunk(run: Path) -> None:
    torch.manual_seed(0)  # the run's initialisation: same seed, same architecture
    start = build_classifier("mobilenet_v2", 2, "scratch").backbone.state_dict()
    state = read_weights_file(run / "checkpoint.pt")
    changed = [k for k, v in start.items() if v.is_floating_point()
               and not torch.equal(v, state[f"backbone.{k}"])]  # fmt: skip
    assert len(changed) > len(start) // 2


def test_lumbar_train_accepts_the_run(run: Path, phantom_manifest: Path, tmp_path: Path) -> None:
    result = train_from(run, phantom_manifest, tmp_path / "down")
    assert result.best_epoch == 1 and "f1" in result.metrics["test"]


def test_resume_continues_the_run(data_with_a_broken_file: Path, run: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    pretrain_unlabelled(tiny(data_with_a_broken_file, epochs=1), out, progress=False)
    first = (out / "history.csv").read_text().splitlines()
    result = pretrain_unlabelled(
        tiny(data_with_a_broken_file, epochs=3), out, resume=True, progress=False
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert (out / "history.csv").read_text().splitlines()[:2] == first
    assert json.loads((out / "config.json").read_text())["pretrain"]["config"]["epochs"] == 3


def test_a_run_saved_with_the_old_spelling_resumes(
    data_with_a_broken_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "old"
    pretrain_unlabelled(tiny(data_with_a_broken_file, epochs=1), out, progress=False)
    config = json.loads((out / "config.json").read_text())
    config["pretrain"]["kind"] = "unlabeled"  # as runs before the one spelling wrote it
    (out / "config.json").write_text(json.dumps(config))
    result = pretrain_unlabelled(
        tiny(data_with_a_broken_file, epochs=2), out, resume=True, progress=False
    )
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_bad_input(tmp_path: Path, unlabelled_set: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        pretrain_unlabelled(tiny(tmp_path / "empty"), tmp_path / "r1", progress=False)
    with pytest.raises(UserError, match="unknown method"):
        pretrain_unlabelled(tiny(unlabelled_set, method="mae"), tmp_path / "r2", progress=False)
    with pytest.raises(UserError, match="unknown augmentation"):
        pretrain_unlabelled(
            tiny(unlabelled_set, augmentation={"hue": 0.1}), tmp_path / "r3", progress=False
        )


def test_real_mri_pngs_pretrain(real_mri_dir: Path, tmp_path: Path) -> None:
    result = pretrain_unlabelled(
        tiny(real_mri_dir, epochs=1, max_images=16), tmp_path / "real", progress=False
    )
    assert result.images == 16 and math.isfinite(result.history[0]["loss"])


def test_torchrun_two_processes(unlabelled_set: Path, tmp_path: Path) -> None:
    """Two gloo processes share each batch; embeddings are gathered, so NT-Xent sees all."""
    out = tmp_path / "ddp"
    result = torchrun_pretrain("unlabelled", unlabelled_set, out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 2
    loss = float(history[1].split(",")[1])
    # untrained, the loss is near log(2N - 1): log(15) = 2.71 when the 8 images of the global
    # batch contrast together, log(7) = 1.95 if each process contrasted its own 4 alone
    assert (math.log(7) + math.log(15)) / 2 < loss < 4.0


def test_frozen_features_of_the_run_vary_between_images(run: Path, unlabelled_set: Path) -> None:
    """BatchNorm statistics are recomputed after training, so frozen (inference-mode) features
    do not collapse to a constant, as they do on stale running averages after a short run."""
    from lumbar.pretrain.dataset import ImageFileDataset
    from lumbar.pretrain.files import scan_images

    model = build_classifier("mobilenet_v2", 2, run).eval()
    files = scan_images([unlabelled_set], max_images=8)
    data = ImageFileDataset(files.paths, model.preprocessing)
    x = torch.stack([data[(0, i)][1] for i in range(len(files))])
    with torch.no_grad():
        features = model.head.flatten(model.head.pool(model.forward_features(x)))
    assert float(features.std(0).mean()) > 0.01 * float(features.abs().mean())
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["bn_recalibrated"] == 16


def test_recalibrate_batchnorm_gives_the_data_statistics() -> None:
    from lumbar.pretrain.common import recalibrate_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4, momentum=0.1))
    batches = [torch.randn(8, 1, 10, 10) * 3 + 1 for _ in range(3)]
    assert recalibrate_batchnorm(net, net, batches) == 24
    with torch.no_grad():
        conv = torch.cat([net[0](b) for b in batches])
    assert torch.allclose(net[1].running_mean, conv.mean((0, 2, 3)), atol=1e-5)
    assert net[1].momentum == 0.1 and net.training


def test_views_and_loss_teach_a_small_network(unlabelled_set: Path) -> None:
    """The two views of an image are paired right: a small CNN learns to tell the images apart
    within 24 steps (mis-paired views or a wrong loss would stay at chance, log(2N - 1))."""
    from lumbar.models import resolve_weights_at
    from lumbar.pretrain.dataset import ImageFileDataset, SimCLRAugmentation
    from lumbar.pretrain.files import scan_images
    from lumbar.pretrain.ssl import SimCLRModel

    class Small(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[torch.nn.Module] = []
            for c_in, c_out in ((3, 16), (16, 32), (32, 64)):
                conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1)
                layers += [
                    conv,
                    torch.nn.BatchNorm2d(c_out),
                    torch.nn.ReLU(),
                    torch.nn.MaxPool2d(2),
                ]
            self.body = torch.nn.Sequential(*layers)

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    torch.manual_seed(0)
    source = resolve_weights_at("mobilenet_v2", "scratch", SIZE)
    files = scan_images([unlabelled_set], max_images=8)
    data = ImageFileDataset(files.paths, source.preprocessing, views=SimCLRAugmentation())
    model = SimCLRModel(Small(), 64, 128, 32).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(24):
        views = torch.stack([data[(step, i)][1] for i in range(len(files))])
        z = model(torch.cat([views[:, 0], views[:, 1]]))
        loss, _ = nt_xent(z[: len(files)], z[len(files) :], 0.2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.85 * math.log(2 * len(files) - 1)  # about 0.77 here
