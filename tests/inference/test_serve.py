"""`lumbar serve`: auth, schema, predictions, heat maps, bad uploads, concurrent requests."""

from __future__ import annotations

import io
import json
import shutil
import socket
import stat
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi.testclient import TestClient
from helpers.tiny_run import make_tiny_run

from lumbar.errors import UserError
from lumbar.inference.batch import PredictModels
from lumbar.inference.predict import Predictor
from lumbar.inference.serve import Limits, create_app, load_token

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ZIP = {"Content-Type": "application/zip"}


def study_zip(study: Path, skip: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(study.rglob("*")):
            if path.is_file():
                if (
                    skip
                    and pydicom.dcmread(path, stop_before_pixels=True).SeriesDescription == skip
                ):
                    continue
                zf.write(path, path.relative_to(study).as_posix())
    return buffer.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    run = make_tiny_run(tmp_path_factory.mktemp("run") / "mnv2", "mobilenet_v2", roi="grid")
    return Predictor.load(run)


@pytest.fixture(scope="module")
def zips(phantom_cohort: Path) -> dict[str, bytes]:
    return {
        "p1": study_zip(phantom_cohort / "patient-0001"),
        "p2": study_zip(phantom_cohort / "patient-0002"),
        "no_axial": study_zip(phantom_cohort / "patient-0003", skip="T2 AX"),
    }


@pytest.fixture(scope="module")
def client(predictor: Predictor) -> TestClient:
    limits = Limits(max_upload=60 * 2**20, max_unpacked=100 * 2**20)
    return TestClient(create_app(predictor, TOKEN, limits))


def test_auth_health_and_schema(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    schema = client.get("/openapi.json").json()
    assert "/v1/predict" in schema["paths"]
    assert "application/zip" in schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert client.post("/v1/predict", content=b"x").status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * 26}
    assert client.post("/v1/predict", content=b"x", headers=wrong).status_code == 401
    assert client.get("/v1/results/abc/heatmaps/L4-L5.png").status_code == 401


def test_predict_and_heatmaps(
    client: TestClient,
    zips: dict[str, bytes],
    phantom_cohort: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = next((phantom_cohort / "patient-0001").rglob("IM*"))
    patient_id = str(pydicom.dcmread(first, stop_before_pixels=True).PatientID)
    with caplog.at_level("DEBUG"):
        response = client.post("/v1/predict", content=zips["p1"], headers={**AUTH, **ZIP})
    assert response.status_code == 200, response.text
    result = response.json()
    assert len(result["discs"]) == 5 and patient_id not in response.text
    assert patient_id not in caplog.text and "patient-0001" not in caplog.text
    url = result["discs"][3]["heatmap"]
    assert url.endswith("/heatmaps/L4-L5.png")
    png = client.get(url, headers=AUTH)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(result["discs"][0]["image"], headers=AUTH).status_code == 200
    assert client.get(url, headers={}).status_code == 401
    assert client.get("/v1/results/nope/heatmaps/L4-L5.png", headers=AUTH).status_code == 404


def _traversal() -> bytes:
    return zip_of({"../../evil.dcm": b"\0" * 128 + b"DICM"})


def _symlink() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("link.dcm")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def _bomb() -> bytes:
    return zip_of({"a.dcm": b"\0" * 128 + b"DICM" + b"\0" * (50 * 2**20)})


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (lambda: b"", 400, "empty upload"),
        (lambda: b"this is not a zip at all", 400, "not a zip"),
        (lambda: zip_of({}), 400, "no files"),
        (_traversal, 400, "unsafe path"),
        (lambda: zip_of({"/abs/x.dcm": b"\0" * 128 + b"DICM"}), 400, "unsafe path"),
        (_symlink, 400, "symbolic-link"),
        (_bomb, 413, "compression ratio"),
        (lambda: zip_of({"notes.txt": b"hello", "x.dcm": b"\0" * 128 + b"DICM"}), 400, "not DICOM"),
    ],
)
def test_bad_uploads_are_4xx_and_the_service_keeps_serving(
    client: TestClient, body, status: int, message: str
) -> None:
    response = client.post("/v1/predict", content=body(), headers={**AUTH, **ZIP})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_study_without_axial_t2_is_422(client: TestClient, zips: dict[str, bytes]) -> None:
    response = client.post("/v1/predict", content=zips["no_axial"], headers={**AUTH, **ZIP})
    assert response.status_code == 422
    assert "no usable axial T2 series" in response.json()["detail"]


def test_upload_size_limit(predictor: Predictor, zips: dict[str, bytes]) -> None:
    small = TestClient(create_app(predictor, TOKEN, Limits(max_upload=1000)))
    response = small.post("/v1/predict", content=zips["p1"], headers={**AUTH, **ZIP})
    assert response.status_code == 413 and "upload larger" in response.json()["detail"]

    def chunks():  # no Content-Length: the cap applies while streaming
        yield zips["p1"][:800]
        yield zips["p1"][800:1600]

    response = small.post("/v1/predict", content=chunks(), headers={**AUTH, **ZIP})
    assert response.status_code == 413
    # stored (ratio 1) members that together unpack past the cap
    capped = TestClient(create_app(predictor, TOKEN, Limits(max_unpacked=2**20)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for i in range(3):
            zf.writestr(f"{i}.dcm", b"\0" * 128 + b"DICM" + bytes(400_000))
    response = capped.post("/v1/predict", content=buffer.getvalue(), headers={**AUTH, **ZIP})
    assert response.status_code == 413 and "unpacks to more than 1 MiB" in response.text
    assert capped.get("/healthz").status_code == 200


def test_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, predictor: Predictor) -> None:
    monkeypatch.delenv("LUMBAR_SERVE_TOKEN", raising=False)
    with pytest.raises(UserError, match="bearer token"):
        load_token(None)
    (tmp_path / "t").write_text("short\n")
    with pytest.raises(UserError, match="16 characters"):
        load_token(tmp_path / "t")
    monkeypatch.setenv("LUMBAR_SERVE_TOKEN", TOKEN)
    assert load_token(None) == TOKEN
    with pytest.raises(UserError):
        create_app(predictor, "short")


def test_serve_believes_no_forwarded_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, predictor: Predictor
) -> None:
    """Issue 17 defect 8, for `lumbar serve`: uvicorn's default believes X-Forwarded-For from
    127.0.0.1 (or $FORWARDED_ALLOW_IPS), which would let any local client name its address."""
    import uvicorn
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from lumbar.inference.serve import serve

    captured: dict = {}
    monkeypatch.setenv("LUMBAR_SERVE_TOKEN", TOKEN)
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: captured.update(app=app, kw=kw))
    monkeypatch.setattr(  # the bundled sagittal models are not what this test is about
        "lumbar.inference.serve.load_predict_models",
        lambda model, **_: PredictModels(None, None, Predictor.load(model)),
    )
    serve(Path(predictor.run_dir), echo=lambda _: None)
    config = uvicorn.Config(captured["app"], **captured["kw"])
    config.load()
    assert not isinstance(config.loaded_app, ProxyHeadersMiddleware)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_concurrent_requests_over_loopback(predictor: Predictor, zips: dict[str, bytes]) -> None:
    import uvicorn

    expected = {}
    for name in ("p1", "p2"):
        work = Path(predictor.run_dir).parent / f"expect-{name}"
        with zipfile.ZipFile(io.BytesIO(zips[name])) as zf:
            zf.extractall(work)
        discs = predictor.predict_study(work)["discs"]
        expected[name] = [d["probabilities"] for d in discs]
        shutil.rmtree(work)
    port = _free_port()
    config = uvicorn.Config(
        create_app(predictor, TOKEN), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)

        def call(name: str) -> tuple[str, list[dict[str, float]]]:
            body = zips[name] if name != "bad" else b"not a zip"
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/predict",
                content=body,
                headers={**AUTH, **ZIP},
                timeout=120,
            )
            if name == "bad":
                assert r.status_code == 400
                return name, []
            assert r.status_code == 200, r.text
            return name, [d["probabilities"] for d in r.json()["discs"]]

        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(call, ["p1", "p2", "bad", "p2", "p1"]))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    for name, probabilities in answers:
        if name != "bad":
            for got, want in zip(probabilities, expected[name], strict=True):
                assert got == pytest.approx(want, abs=1e-4)


def test_image_endpoint_returns_what_predict_writes(phantom_cohort: Path, tmp_path: Path) -> None:
    from helpers.sagittal_models import TruthFinder, toy_models
    from helpers.shared_data import SHARED_DATA

    from lumbar.inference.batch import predict_inputs

    spider = SHARED_DATA / "spider-sagittal"
    if not (spider / "discs.csv").is_file():
        pytest.skip(f"SPIDER slices not found at {spider}")
    finder = TruthFinder()
    (image,) = finder.add_spider(spider, ["104_t2.png"])
    models = toy_models(finder)
    predict_inputs([str(image)], tmp_path / "out", models, echo=lambda _: None)
    written = json.loads((tmp_path / "out" / "104_t2" / "prediction.json").read_text())

    client = TestClient(create_app(None, TOKEN, models=models))
    png = {**AUTH, "Content-Type": "image/png"}
    answer = client.post("/v1/predict/image", content=image.read_bytes(), headers=png)
    assert answer.status_code == 200, answer.text
    served = answer.json()
    same = ("input", "name", "id", "base")
    assert {k: v for k, v in served.items() if k not in same} == {
        k: v for k, v in written.items() if k not in same
    }
    assert served["input"] == "upload" and str(tmp_path) not in answer.text
    overlay = client.get(served["base"] + served["overlay"], headers=AUTH)
    assert overlay.status_code == 200 and overlay.content[:4] == b"\x89PNG"
    cam = client.get(served["base"] + served["discs"][-1]["gradcam"], headers=AUTH)
    assert cam.status_code == 200 and cam.content[:4] == b"\x89PNG"

    blank = client.post("/v1/predict/image", content=b"\x89PNG not really", headers=png)
    assert blank.status_code == 422 and "cannot read the image" in blank.json()["detail"]
    wrong = client.post("/v1/predict/image", content=b"x", headers={**AUTH, **ZIP})
    assert wrong.status_code == 400
    assert client.post("/v1/predict/image", content=image.read_bytes()).status_code == 401
    study = client.post(
        "/v1/predict", content=study_zip(phantom_cohort / "patient-0001"), headers={**AUTH, **ZIP}
    )
    assert study.status_code == 422 and "no discs found" in study.json()["detail"]
    assert client.get("/healthz").json()["models"]["grader"] == "toy (test)"
