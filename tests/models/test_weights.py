"""Weight sources: imagenet (cache, offline error, download over loopback), files with
sidecars, run folders, scratch; and the EfficientNet-Lite0 ImageNet weights on real photos.

No test reaches the internet: the hub cache is a temporary folder, downloads come from an
http.server bound to 127.0.0.1.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lumbar import runs
from lumbar.errors import UserError
from lumbar.models import (
    build_classifier,
    create_backbone,
    download_imagenet_weights,
    get_backbone_spec,
    imagenet_weights_available,
    load_classifier,
    resolve_weights,
    save_checkpoint,
)
from lumbar.models.preprocessing import CAFFE, IMAGENET, TF_127, Preprocessing

# ----------------------------------------------------------------------------- imagenet


def test_missing_imagenet_file_names_the_file_and_folder(torch_home: Path) -> None:
    with pytest.raises(UserError) as info:
        resolve_weights("vgg16", "imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert "vgg16-397923af.pth" in message
    assert f"{torch_home}/" in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
    assert not imagenet_weights_available("vgg16")


def test_cached_imagenet_file_is_found_checked_and_loaded(fake_imagenet) -> None:
    path, state = fake_imagenet("mobilenet_v2")
    assert imagenet_weights_available("mobilenet_v2")
    source = resolve_weights("mobilenet_v2", "imagenet")
    assert (source.kind, source.path, source.preprocessing) == ("imagenet", path, IMAGENET)
    model = create_backbone("mobilenet_v2", "imagenet")
    assert model.load_report.head_loaded
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_corrupt_cached_imagenet_file_is_a_user_error(fake_imagenet) -> None:
    path, _ = fake_imagenet("mobilenet_v2")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="not the expected mobilenet_v2 weights file"):
        create_backbone("mobilenet_v2", "imagenet")


@pytest.fixture
def loopback_server(torch_home: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving torch_home/../served; yields its base URL."""
    folder = torch_home.parent / "served"
    folder.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_checks_the_hash_and_lands_in_the_hub_cache(
    fake_imagenet, loopback_server: str, torch_home: Path
) -> None:
    served, _ = fake_imagenet("mobilenet_v2", in_cache=False)
    assert not imagenet_weights_available("mobilenet_v2")
    path = download_imagenet_weights(
        "mobilenet_v2", progress=False, url=f"{loopback_server}/{served.name}"
    )
    assert path == torch_home / served.name
    assert path.read_bytes() == served.read_bytes()
    assert resolve_weights("mobilenet_v2", "imagenet").kind == "imagenet"


def test_download_with_a_wrong_hash_leaves_nothing(
    fake_imagenet, loopback_server: str, torch_home: Path
) -> None:
    served, _ = fake_imagenet("mobilenet_v2", in_cache=False)
    served.write_bytes(b"not the weights")
    with pytest.raises(UserError, match="hash"):
        download_imagenet_weights(
            "mobilenet_v2", progress=False, url=f"{loopback_server}/{served.name}"
        )
    assert not any(torch_home.iterdir())


def test_download_failure_is_a_user_error(loopback_server: str, torch_home: Path) -> None:
    with pytest.raises(UserError, match=r"could not download resnet50-0676ba61\.pth"):
        download_imagenet_weights("resnet50", progress=False, url=f"{loopback_server}/absent.pth")


# ----------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def mobilenet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return get_backbone_spec("mobilenet_v2").builder(num_classes=1000).state_dict()


def _trunk_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("classifier.")}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_without_head_loads_and_keeps_a_new_head(
    tmp_path: Path, mobilenet_state: dict[str, torch.Tensor], suffix: str
) -> None:
    path = tmp_path / f"notop{suffix}"
    trunk = _trunk_only(mobilenet_state)
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in trunk.items()}, str(path))
    else:
        torch.save({"state_dict": trunk}, path)
    model = create_backbone("mobilenet_v2", path, num_classes=5)
    assert model.load_report.head_loaded is False
    assert model.weight_source.preprocessing == IMAGENET  # no sidecar: the ImageNet default
    assert "no sidecar" in model.weight_source.description
    assert torch.equal(
        model.state_dict()["features.3.conv.1.0.weight"], trunk["features.3.conv.1.0.weight"]
    )
    assert model.classifier[1].weight.shape == (5, 1280)


def test_full_file_with_other_head_size_loads_the_trunk(
    tmp_path: Path, mobilenet_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "full.pt"
    torch.save(mobilenet_state, path)
    model = create_backbone("mobilenet_v2", path, num_classes=2)
    report = model.load_report
    assert not report.head_loaded
    assert set(report.head_skipped) == {"classifier.1.weight", "classifier.1.bias"}


def test_sidecar_declares_caffe_preprocessing(
    tmp_path: Path, mobilenet_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "caffe.pth"
    torch.save(mobilenet_state, path)
    sidecar = tmp_path / "caffe.pth.json"
    sidecar.write_text(json.dumps({"backbone": "mobilenet_v2", "preprocessing": CAFFE.to_dict()}))
    assert resolve_weights("mobilenet_v2", path).preprocessing == CAFFE
    sidecar.write_text(json.dumps(TF_127.to_dict()))  # the bare form works too
    assert resolve_weights("mobilenet_v2", path).preprocessing == TF_127


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ({"backbone": "vgg16", "preprocessing": {}}, "for vgg16, not mobilenet_v2"),
        ({"preprocessing": {"channels": "cmyk"}}, "not a valid preprocessing"),
        ({"colour": "blue"}, "unknown preprocessing field"),
    ],
)
def test_bad_sidecar_is_a_user_error(
    tmp_path: Path, mobilenet_state: dict[str, torch.Tensor], sidecar: dict, message: str
) -> None:
    path = tmp_path / "w.pth"
    torch.save(mobilenet_state, path)
    (tmp_path / "w.pth.json").write_text(json.dumps(sidecar))
    with pytest.raises(UserError, match=message):
        resolve_weights("mobilenet_v2", path)


def test_weights_of_another_backbone_do_not_fit(
    tmp_path: Path, mobilenet_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "mnv2.pth"
    torch.save(mobilenet_state, path)
    with pytest.raises(UserError, match=r"do not fit efficientnet_lite0: .*missing"):
        create_backbone("efficientnet_lite0", path)


def test_wrong_shape_names_the_tensor(
    tmp_path: Path, mobilenet_state: dict[str, torch.Tensor]
) -> None:
    state = dict(mobilenet_state)
    state["features.0.0.weight"] = torch.zeros(32, 1, 3, 3)  # a grayscale stem
    path = tmp_path / "gray.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"features\.0\.0\.weight has shape \(32, 1, 3, 3\)"):
        create_backbone("mobilenet_v2", path)


def test_ddp_prefix_and_missing_batch_counters_are_accepted(
    tmp_path: Path, mobilenet_state: dict[str, torch.Tensor]
) -> None:
    state = {
        f"module.{k}": v
        for k, v in mobilenet_state.items()
        if not k.endswith("num_batches_tracked")
    }
    path = tmp_path / "ddp.pth"
    torch.save(state, path)
    model = create_backbone("mobilenet_v2", path)
    assert model.load_report.head_loaded


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("imagenet21k", "neither 'imagenet', 'scratch'"),
        ("weights.h5", "neither"),
    ],
)
def test_unknown_weight_source(weights: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=message):
        resolve_weights("vgg16", tmp_path / weights if weights.endswith(".h5") else weights)


def test_wrong_suffix_and_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(UserError, match=r"not one of \.pth"):
        resolve_weights("vgg16", tmp_path / "w.h5")
    (tmp_path / "w.pth").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match=r"cannot read weights file w\.pth"):
        create_backbone("mobilenet_v2", tmp_path / "w.pth")


# ----------------------------------------------------------------------------- run folders


def _write_run(run: Path, model, **config) -> None:
    run.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run, model, epoch=3)
    (run / runs.CONFIG).write_text(
        json.dumps({**model.config(), "target": "disc_abnormal", **config})
    )


def test_run_folder_round_trip(tmp_path: Path) -> None:
    gray = Preprocessing(
        input_size=(96, 96), channels="rgb", pixel_range=1.0, mean=(0.2,) * 3, std=(0.3,) * 3
    )
    source = resolve_weights("mobilenet_v2", "scratch")
    source = type(source)("file", "mobilenet_v2", gray, None, "test")
    torch.manual_seed(2)
    model = build_classifier("mobilenet_v2", 2, source, head="flatten", hidden=16)
    assert model.head.pool.output_size == (3, 3)  # 96 / 32
    run = tmp_path / "run"
    _write_run(run, model)
    assert (run / runs.CHECKPOINT).is_file()

    # As a weight source: the trunk transfers, the preprocessing comes along, the head is new.
    as_source = resolve_weights("mobilenet_v2", run)
    assert (as_source.kind, as_source.preprocessing) == ("run", gray)
    transferred = build_classifier("mobilenet_v2", 4, run)
    assert transferred.preprocessing == gray
    torch.testing.assert_close(
        transferred.backbone.state_dict()["features.5.conv.0.0.weight"],
        model.backbone.state_dict()["features.5.conv.0.0.weight"],
    )

    # As a trained model: everything comes back, outputs identical.
    restored = load_classifier(run)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model.eval()(x))
    assert restored.config()["head"] == "flatten"


def test_run_folder_of_another_backbone(tmp_path: Path) -> None:
    model = build_classifier("mobilenet_v2", 2, "scratch")
    _write_run(tmp_path / "run", model)
    with pytest.raises(UserError, match="trained mobilenet_v2, not efficientnet_lite0"):
        resolve_weights("efficientnet_lite0", tmp_path / "run")


def test_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match=r"not a run folder: it needs checkpoint\.pt and config\.json"
    ):
        resolve_weights("vgg16", tmp_path)


def test_scratch_source_uses_the_backbones_imagenet_preprocessing() -> None:
    assert resolve_weights("efficientnet_lite0", "scratch").preprocessing == TF_127
    assert resolve_weights("resnet50", "SCRATCH").preprocessing == IMAGENET


# ----------------------------------------------------------------------------- real weights


def _photo(path: Path, prep: Preprocessing) -> torch.Tensor:
    """Resize the short side to 256, centre-crop 224, normalise as `prep` says."""
    image = Image.open(path).convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    image = image.crop((left, top, left + 224, top + 224))
    x = np.asarray(image, dtype=np.float32) / 255.0 * prep.pixel_range
    x = (x - np.array(prep.mean, dtype=np.float32)) / np.array(prep.std, dtype=np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)


def test_efficientnet_lite0_imagenet_recognises_photos() -> None:
    """Grace Hopper in uniform (matplotlib's sample) and a Chinese palace (scikit-learn's).

    ImageNet classes: 652 military uniform, 400 academic gown, 667 mortarboard, 698 palace.
    """
    import matplotlib

    sklearn = pytest.importorskip("sklearn")
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    china = Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg"
    model = create_backbone("efficientnet_lite0", "imagenet").eval()
    prep = model.weight_source.preprocessing
    assert prep == TF_127
    batch = torch.stack([_photo(hopper, prep), _photo(china, prep)])
    with torch.no_grad():
        probs = model(batch).softmax(1)
    top5 = probs.topk(5).indices.tolist()
    assert top5[0][0] in {652, 400, 667} and 652 in top5[0]
    assert top5[1][0] == 698 and probs[1, 698] > 0.3
