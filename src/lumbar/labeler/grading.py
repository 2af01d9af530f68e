"""FaLa's grading API (JSON): a patient's gradings per level, saving one level's grades with
optimistic locking (a stale version is refused with 409 and the current values), and the
model's suggestions, which are served here read-only and never pass through the saving path."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from lumbar.grading import DiscLevel
from lumbar.labeler.deps import (
    SUGGESTION_NOTE,
    CurrentUser,
    LabelerApp,
    UserWithCsrf,
    grading_json,
    slot_for,
)
from lumbar.labeler.store import CONSENSUS, FIELDS, StaleGradingError

__all__ = ["router"]

log = logging.getLogger("lumbar.labeler")
router = APIRouter(prefix="/api/patients/{patient_id}")


@router.get("/gradings")
async def gradings(
    app: LabelerApp, session: CurrentUser, patient_id: str, slot: str | None = None
) -> Response:
    app.patient_images(patient_id)
    chosen = slot_for(session.user, slot)
    rows = app.store.gradings(patient_id=patient_id, slot=chosen)
    return JSONResponse({"gradings": {g.level: grading_json(g) for g in rows}})


@router.get("/suggestions")
async def suggestions(app: LabelerApp, session: CurrentUser, patient_id: str) -> Response:
    """The model's suggestion per level (read-only; 404 when no model is configured)."""
    app.patient_images(patient_id)
    if app.suggestions is None:
        return JSONResponse({"detail": "no model configured"}, status_code=404)
    try:  # the model runs in a worker thread, not on the event loop
        found = await run_in_threadpool(app.suggestions.for_patient, patient_id)
    except Exception:
        log.exception("model suggestions failed for patient %s", patient_id)
        return JSONResponse({"detail": "model suggestions unavailable"}, status_code=503)
    return JSONResponse({"suggestions": found, "note": SUGGESTION_NOTE})


@router.put("/gradings/{level}")
async def save(
    request: Request,
    app: LabelerApp,
    session: UserWithCsrf,
    patient_id: str,
    level: str,
    slot: str | None = None,
) -> Response:
    started = time.perf_counter()
    user = session.user
    app.patient_images(patient_id)
    chosen = slot_for(user, slot)
    try:
        level_value = DiscLevel.parse(level).value
    except ValueError as err:
        return JSONResponse({"detail": str(err)}, status_code=422)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"detail": "body must be JSON"}, status_code=422)
    problem = check_save_body(body)
    if problem:
        return JSONResponse({"detail": problem}, status_code=422)
    try:
        saved = app.store.save_grading(
            patient_id,
            level_value,
            chosen,
            body["changes"],
            base_version=body["version"],
            by=user.id,
            action="consensus" if chosen == CONSENSUS else "grade",
        )
    except StaleGradingError:
        current = app.store.gradings(patient_id=patient_id, slot=chosen)
        now = next((g for g in current if g.level == level_value), None)
        detail = (
            f"Not saved: {level_value} was changed in another tab or by another user since "
            "you loaded it. The newest values are shown; check them and grade again."
        )
        return JSONResponse(
            {"detail": detail, "current": grading_json(now) if now else None},
            status_code=409,
        )
    except ValueError as err:
        return JSONResponse({"detail": str(err)}, status_code=422)
    log.info("saved %s %s v%d by %s", patient_id, level_value, saved.version, user.name)
    took = (time.perf_counter() - started) * 1000
    # Server-Timing: the server's share of a save's latency (browser devtools show it)
    return JSONResponse(grading_json(saved), headers={"Server-Timing": f"app;dur={took:.1f}"})


def check_save_body(body: object) -> str | None:
    """What is wrong with a save's JSON body, or None: {"version": int, "changes": {...}}."""
    if not isinstance(body, dict) or set(body) != {"version", "changes"}:
        return 'body must be {"version": int, "changes": {field: grade or null}}'
    version, changes = body["version"], body["changes"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        return "version must be a non-negative integer"
    if not isinstance(changes, dict) or not changes:
        return "changes must be a non-empty object"
    for key, value in changes.items():
        if key not in FIELDS:
            return f"unknown field; expected one of {', '.join(FIELDS)}"
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 3
        ):
            return f"{key} grade must be an integer 0-3 or null"
    return None
