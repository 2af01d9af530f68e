"""`lumbar serve`: the prediction service a DICOM viewer can call (FastAPI).

    POST /v1/predict                        body: a zip of one study's DICOM files
                                            -> the prediction JSON (as `lumbar predict`)
    POST /v1/predict/image                  body: one sagittal image (PNG, JPEG, DICOM)
                                            -> its prediction.json (as `lumbar predict IMAGE`)
    GET  /v1/results/{id}/overlay.png            sagittal slice with boxes, levels, P(abnormal)
    GET  /v1/results/{id}/gradcam/{level}.png    Grad-CAM of one disc (sagittal grader)
    GET  /v1/results/{id}/heatmaps/{level}.png   Grad-CAM overlay of one disc level (axial run)
    GET  /v1/results/{id}/images/{level}.png     the selected axial image (ROI crop)
    GET  /healthz                           liveness (no token)
    GET  /openapi.json, /docs               the schema

Every /v1 call needs `Authorization: Bearer <token>`. Uploads are untrusted: the body size is
capped while it streams in; the zip is checked before anything is extracted (path traversal
entries, links, member count, declared uncompressed size) and again while extracting (actual
bytes written, so a lying header cannot inflate past the cap); every member must be a DICOM
Part 10 file. Problems are 4xx answers naming the rule, never a member's name (file names in
studies may contain patient names), and the service keeps serving.

Started without `--model`, or with one, the service predicts as `lumbar predict` does
(`lumbar.inference.batch`): the bundled disc localiser and sagittal grader, plus the axial run
when given; a study's JSON is its prediction.json with "id" and "base" added (the relative image
paths in it resolve under "base"). An app made around an axial `Predictor` alone keeps the
earlier axial-only JSON.

Logs carry a request id, sizes, status and timings only: no file names, no patient ids. The
model and the ingest step each run one study at a time (see `lumbar.inference.predict`); uploads and
unpacking of concurrent requests proceed in parallel in the server's thread pool.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from lumbar.errors import UserError
from lumbar.inference.batch import PredictModels, load_predict_models, predict_inputs
from lumbar.inference.predict import Predictor, set_threads

__all__ = ["Limits", "UploadProblem", "create_app", "load_token", "safe_extract", "serve"]

log = logging.getLogger("lumbar.inference.serve")


@dataclass(frozen=True)
class Limits:
    """What one upload may be.

    Args:
        max_upload: compressed request body, bytes.
        max_unpacked: total uncompressed size of the zip's members, bytes.
        max_members: number of zip entries.
        max_ratio: largest compression ratio of one member (a zip bomb's tell).
        keep_results: finished results kept in memory for the heat-map URLs (oldest dropped).
    """

    max_upload: int = 512 * 2**20
    max_unpacked: int = 2 * 2**30
    max_members: int = 10_000
    max_ratio: float = 200.0
    keep_results: int = 64

    def __post_init__(self) -> None:
        for name in ("max_upload", "max_unpacked", "max_members", "keep_results"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


class UploadProblem(Exception):
    """A rejected upload: HTTP status and a message safe to show (no member names)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def safe_extract(archive: Path, dest: Path, limits: Limits) -> int:
    """Extract a study zip into `dest` after checking it; return the number of files.

    Raises:
        UploadProblem: 400 not a zip / empty / path traversal or links / non-DICOM members;
            413 too many members or too large when unpacked.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise UploadProblem(400, "the upload is not a zip archive") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise UploadProblem(413, f"the zip has more than {limits.max_members} entries")
        files = [i for i in infos if not i.is_dir()]
        if not files:
            raise UploadProblem(400, "the zip holds no files")
        declared = 0
        for info in files:
            name = info.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                raise UploadProblem(400, "the zip has an entry with an unsafe path (traversal)")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UploadProblem(400, "the zip has a symbolic-link entry")
            declared += info.file_size
            if info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
                raise UploadProblem(413, "the zip has an entry with an excessive compression ratio")
        if declared > limits.max_unpacked:
            raise UploadProblem(
                413, f"the zip unpacks to more than {limits.max_unpacked // 2**20} MiB"
            )
        written = 0
        not_dicom = 0
        for n, info in enumerate(files):
            target = dest / f"{n:06d}.dcm"  # member names are not reused: they may name people
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    head = b""
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > limits.max_unpacked:
                            raise UploadProblem(
                                413,
                                f"the zip unpacks to more than {limits.max_unpacked // 2**20} MiB",
                            )
                        if len(head) < 132:
                            head += chunk[: 132 - len(head)]
                        out.write(chunk)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError):
                raise UploadProblem(400, "the zip archive is damaged or encrypted") from None
            if head[128:132] != b"DICM":
                not_dicom += 1
        if not_dicom:
            raise UploadProblem(
                400,
                f"{not_dicom} of {len(files)} zip members are not DICOM files "
                "(no Part 10 'DICM' header)",
            )
    return len(files)


class _Results:
    """The last `size` results' images, by id (thread-safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[str, dict[str, dict[str, bytes]]] = OrderedDict()
        self.lock = threading.Lock()

    def put(self, pictures: dict[str, dict[str, bytes]]) -> str:
        key = secrets.token_urlsafe(16)
        with self.lock:
            self.items[key] = pictures
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return key

    def get(self, key: str) -> dict[str, dict[str, bytes]] | None:
        with self.lock:
            return self.items.get(key)


@dataclass
class Service:
    """The service's state: the loaded model, the upload limits, the latest results' images,
    and the bearer token every /v1 call must present."""

    predictor: Predictor | None
    limits: Limits
    results: _Results
    token: bytes
    models: PredictModels | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def service(request: Request) -> Service:
    """The app's `Service` (a dependency)."""
    return request.app.state.service  # type: ignore[no-any-return]


ServiceState = Annotated[Service, Depends(service)]
_bearer = HTTPBearer(auto_error=False)


def authorised(
    state: ServiceState,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Let the request through only with the service's bearer token (compared in constant
    time); otherwise 401."""
    given = credentials.credentials.encode("utf-8") if credentials else b""
    if not hmac.compare_digest(given, state.token):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


health = APIRouter(tags=["service"])
v1 = APIRouter(prefix="/v1", tags=["prediction"], dependencies=[Depends(authorised)])


@health.get("/healthz")
def healthz(state: ServiceState) -> dict[str, Any]:
    """Liveness, and which models are loaded."""
    if state.models is not None:
        return {"status": "ok", "models": state.models.info}
    assert state.predictor is not None
    return {"status": "ok", "model": state.predictor.model_info()}


@v1.post(
    "/predict",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        400: {"description": "not a zip, empty, unsafe entries, non-DICOM members"},
        401: {"description": "missing or wrong bearer token"},
        413: {"description": "upload or unpacked study too large"},
        422: {"description": "the study cannot be predicted (e.g. no axial T2 series)"},
    },
)
async def predict(request: Request, state: ServiceState) -> JSONResponse:
    """Predict one study: POST its DICOM files as a zip (Content-Type application/zip)."""
    limits = state.limits
    request_id = secrets.token_hex(4)
    start = time.perf_counter()
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_upload:
        log.info("%s rejected: body of %s bytes over the limit", request_id, declared)
        return _problem(413, f"upload larger than {limits.max_upload // 2**20} MiB")
    work = Path(tempfile.mkdtemp(prefix="lumbar-serve-"))
    try:
        archive = work / "upload.zip"
        size = 0
        with open(archive, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_upload:
                    log.info("%s rejected: body over the limit while streaming", request_id)
                    return _problem(413, f"upload larger than {limits.max_upload // 2**20} MiB")
                f.write(chunk)
        if size == 0:
            return _problem(400, "empty upload: POST a zip of the study's DICOM files")
        try:
            if state.models is not None:
                result = await run_in_threadpool(_predict_zip_batch, state, archive, work)
            else:
                assert state.predictor is not None
                result = await run_in_threadpool(
                    _predict_zip, state.predictor, archive, work, limits
                )
        except UploadProblem as problem:
            log.info("%s rejected (%d): %s", request_id, problem.status, problem.message)
            return _problem(problem.status, problem.message)
        except UserError as err:
            log.info("%s unprocessable study", request_id)
            return _problem(422, str(err))
        if state.models is not None:
            return _answered(request_id, "", result, size, start)
        pictures = result.pop("_images")
        key = state.results.put(pictures)
        for disc in result["discs"]:
            disc["image"] = f"/v1/results/{key}/images/{disc['level']}.png"
            disc["heatmap"] = f"/v1/results/{key}/heatmaps/{disc['level']}.png"
        result["id"] = key
        return _answered(request_id, "", result, size, start)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@v1.post(
    "/predict/image",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("image/png", "image/jpeg", "application/dicom")
            },
        }
    },
    responses={
        400: {"description": "empty upload or an unsupported content type"},
        401: {"description": "missing or wrong bearer token"},
        413: {"description": "upload too large"},
        422: {"description": "not a readable image, or no disc found with confidence"},
        503: {"description": "the service runs without the sagittal models"},
    },
)
async def predict_image(request: Request, state: ServiceState) -> JSONResponse:
    """Predict one sagittal image: POST its bytes (image/png, image/jpeg or application/dicom)."""
    if state.models is None:
        return _problem(503, "this service runs an axial model only; POST a study zip")
    suffix = _IMAGE_TYPES.get(request.headers.get("content-type", "").split(";")[0].strip())
    if suffix is None:
        return _problem(400, "Content-Type must be image/png, image/jpeg or application/dicom")
    limits = state.limits
    request_id = secrets.token_hex(4)
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lumbar-serve-"))
    try:
        upload = work / f"image{suffix}"
        size = 0
        with open(upload, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_upload:
                    return _problem(413, f"upload larger than {limits.max_upload // 2**20} MiB")
                f.write(chunk)
        if size == 0:
            return _problem(400, "empty upload: POST the image's bytes")
        try:
            result = await run_in_threadpool(_predict_batch, state, upload, work)
        except UserError as err:
            log.info("%s unprocessable image", request_id)
            return _problem(422, str(err))
        return _answered(request_id, "an image of ", result, size, start)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _answered(
    request_id: str, what: str, result: dict[str, Any], size: int, start: float
) -> JSONResponse:
    """Log one line on a served prediction (no identifiers: the request id and counts), and
    answer its JSON."""
    log.info(
        "%s predicted %d discs from %s%d bytes in %.2f s",
        request_id, len(result["discs"]), what, size, time.perf_counter() - start,
    )  # fmt: skip
    return JSONResponse(result)


_IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "application/dicom": ".dcm"}


def _predict_batch(state: Service, path: Path, work: Path) -> dict[str, Any]:
    """One input through `lumbar predict`'s batch (models shared: one request at a time); its
    prediction.json plus "id" and "base" for the pictures.

    Raises:
        UserError: the input failed (its one-line reason).
    """
    assert state.models is not None
    with state.lock:
        batch = predict_inputs(
            [str(path)], work / "out", state.models, echo=lambda _: None, labels=["upload"]
        )
    outcome = batch.inputs[0]
    if outcome.error:
        raise UserError(outcome.error)
    pictures = {"overlay": {"png": outcome.overlay}} if outcome.overlay else {}
    for key, data in outcome.gradcams.items():
        kind, _, level = key.rpartition("/")
        pictures.setdefault(level, {})[kind or "gradcam"] = data
    key = state.results.put(pictures)
    return {**outcome.prediction, "id": key, "base": f"/v1/results/{key}/"}


def _predict_zip_batch(state: Service, archive: Path, work: Path) -> dict[str, Any]:
    study = work / "study"
    study.mkdir()
    safe_extract(archive, study, state.limits)
    archive.unlink()
    return _predict_batch(state, study, work)


@v1.get("/results/{key}/overlay.png", response_class=Response)
def sagittal_overlay(state: ServiceState, key: str) -> Response:
    """The sagittal slice of a result with each disc's box, level and P(abnormal)."""
    pictures = state.results.get(key)
    if pictures is None or "overlay" not in pictures:
        raise HTTPException(404, "no such result (results are kept for the latest studies)")
    return Response(pictures["overlay"]["png"], media_type="image/png")


@v1.get("/results/{key}/gradcam/{level}", response_class=Response)
def gradcam(state: ServiceState, key: str, level: str) -> Response:
    """The Grad-CAM of one disc (e.g. L4-L5.png) of a sagittal result."""
    return _picture(state, key, "gradcam", level)


@v1.get("/results/{key}/axial/{name}", response_class=Response)
def axial_picture(state: ServiceState, key: str, name: str) -> Response:
    """A study's axial image (L4-L5.png) or its Grad-CAM (L4-L5-gradcam.png), axial run."""
    return _picture(state, key, "axial", name)


def _picture(state: Service, key: str, kind: str, level: str) -> Response:
    pictures = state.results.get(key)
    name = level.removesuffix(".png")
    if pictures is None or name not in pictures or not level.endswith(".png"):
        raise HTTPException(404, "no such result (results are kept for the latest studies)")
    return Response(pictures[name][kind], media_type="image/png")


_PNG = {"response_class": Response, "responses": {200: {"content": {"image/png": {}}}}}


@v1.get("/results/{key}/heatmaps/{level}", **_PNG)  # type: ignore[arg-type]
def heatmap(state: ServiceState, key: str, level: str) -> Response:
    """The Grad-CAM overlay of one disc level (e.g. L4-L5.png) of a result."""
    return _picture(state, key, "heatmap", level)


@v1.get("/results/{key}/images/{level}", **_PNG)  # type: ignore[arg-type]
def image(state: ServiceState, key: str, level: str) -> Response:
    """The axial image (ROI crop) of one disc level of a result."""
    return _picture(state, key, "image", level)


def create_app(
    predictor: Predictor | None,
    token: str,
    limits: Limits | None = None,
    *,
    models: PredictModels | None = None,
) -> FastAPI:
    """The service application: the `health` and `v1` routers over models loaded once.

    Args:
        predictor: a loaded axial `Predictor`, alone (the earlier axial-only service), or None.
        token: the bearer token every /v1 call must present.
        limits: upload limits (defaults: `Limits()`).
        models: `lumbar predict`'s models (bundled sagittal ones, plus an axial run): studies
            and images predicted as `lumbar predict` does.
    """
    if predictor is None and models is None:
        raise ValueError("give a predictor or models")
    if len(token) < 16:
        raise UserError("the service token must be at least 16 characters")
    limits = limits or Limits()
    app = FastAPI(
        title="lumbar prediction service",
        version="1",
        description="Per-disc states with Grad-CAM heat maps for one lumbar MRI study.",
    )
    app.state.service = Service(
        predictor, limits, _Results(limits.keep_results), token.encode(), models
    )
    app.state.predictor = predictor
    app.include_router(health)
    app.include_router(v1)
    return app


def _predict_zip(predictor: Predictor, archive: Path, work: Path, limits: Limits) -> dict[str, Any]:
    study = work / "study"
    study.mkdir()
    safe_extract(archive, study, limits)
    archive.unlink()
    return predictor.predict_study(study, None, work=work / "predict")


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def serve(
    model: Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token_file: Path | None = None,
    limits: Limits | None = None,
    roi: str | None = None,
    threads: int = 0,
    echo: Callable[[str], None] = print,
) -> None:
    """`lumbar serve`: load the bundled models (and the run `model`, if given; see
    `lumbar.inference.batch.load_predict_models`) and serve them on `host`:`port` until stopped.

    Raises:
        UserError: no usable token (`load_token`), a bad run folder, ROI or thread count.
    """
    import uvicorn

    set_threads(threads)
    token = load_token(token_file)
    models = load_predict_models(model, roi=roi)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    which = "bundled models" + (f" + {Path(model).name}" if model is not None else "")
    echo(f"lumbar serve: {which}; POST http://{host}:{port}/v1/predict or /v1/predict/image")
    # no proxy headers: the service keys nothing on the client's address, and its log should
    # name the real peer (uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1)
    app = create_app(models.axial, token, limits, models=models)
    uvicorn.run(app, host=host, port=port, proxy_headers=False, log_level="info")


def load_token(token_file: Path | None) -> str:
    """The service token: from `token_file`, else $LUMBAR_SERVE_TOKEN.

    Raises:
        UserError: neither is given, or the token is shorter than 16 characters.
    """

    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError:
            raise UserError(f"cannot read the token file {Path(token_file).name}") from None
    else:
        token = os.environ.get("LUMBAR_SERVE_TOKEN", "").strip()
    if not token:
        raise UserError(
            "the service needs a bearer token: a token file or $LUMBAR_SERVE_TOKEN "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            option="token_file",
        )
    if len(token) < 16:
        raise UserError("the service token must be at least 16 characters")
    return token
