"""FaLa's worklist and patient pages: `/` (every patient with the raters' progress), `/next`
(the user's next unfinished patient), `/patients/{id}` (the viewer with the Table 3 form) and
its images, served by (patient, index) from the catalog, never by a client path."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from lumbar.grading import LEVELS, GradeField
from lumbar.labeler.catalog import IMAGE_TYPES
from lumbar.labeler.deps import (
    SUGGESTION_NOTE,
    CurrentUser,
    Labeler,
    LabelerApp,
    grading_json,
    slot_for,
)
from lumbar.labeler.store import CONSENSUS, User, rater_slot

__all__ = ["router"]

log = logging.getLogger("lumbar.labeler")
router = APIRouter()


def worklist_rows(app: Labeler, user: User) -> list[dict[str, Any]]:
    """Every patient: images, the user's graded levels, every rater's completed levels."""
    mine = app.store.progress(rater_slot(user.id))
    every: dict[str, dict[str, int]] = {}
    names = app.store.slot_names()
    for g in app.store.gradings():
        if g.complete:
            per = every.setdefault(g.patient_id, {})
            label = names.get(g.slot, g.slot)
            per[label] = per.get(label, 0) + 1
    return [
        {
            "patient_id": pid,
            "images": len(images),
            "mine": mine.get(pid, 0),
            "raters": every.get(pid, {}),
        }
        for pid, images in app.catalog.patients.items()
    ]


@router.get("/")
async def worklist(
    request: Request, app: LabelerApp, session: CurrentUser, filter: str = "all"
) -> Response:
    rows = worklist_rows(app, session.user)
    if filter == "todo":
        rows = [r for r in rows if r["mine"] < len(LEVELS)]
    done = sum(1 for r in worklist_rows(app, session.user) if r["mine"] == len(LEVELS))
    return app.render(
        request,
        "worklist.html",
        rows=rows,
        csrf=session.csrf,
        filter=filter if filter in ("all", "todo") else "all",
        done=done,
        total=len(app.catalog.patients),
    )


@router.get("/next")
async def next_patient(app: LabelerApp, session: CurrentUser, after: str = "") -> Response:
    mine = app.store.progress(rater_slot(session.user.id))
    order = list(app.catalog.patients)
    start = order.index(after) + 1 if after in app.catalog.patients else 0
    for pid in order[start:] + order[:start]:
        if mine.get(pid, 0) < len(LEVELS) and pid != after:
            return RedirectResponse(f"/patients/{quote(pid)}", status_code=303)
    return RedirectResponse("/?filter=todo&done=1", status_code=303)


@router.get("/patients/{patient_id}")
async def patient_page(
    request: Request,
    app: LabelerApp,
    session: CurrentUser,
    patient_id: str,
    slot: str | None = None,
) -> Response:
    images = app.patient_images(patient_id)
    chosen = slot_for(session.user, slot)
    gradings = {
        g.level: grading_json(g) for g in app.store.gradings(patient_id=patient_id, slot=chosen)
    }
    others: list[dict[str, Any]] = []
    if chosen == CONSENSUS:  # the adjudicating admin sees every rater's grades
        others = [
            {"rater": g.rater, "level": g.level, "grades": g.grades}
            for g in app.store.gradings(patient_id=patient_id)
            if g.slot != CONSENSUS
        ]
    order = list(app.catalog.patients)
    index = order.index(patient_id)
    data = {
        "patient": patient_id,
        "slot": "consensus" if chosen == CONSENSUS else "mine",
        "csrf": session.csrf,
        "levels": [lv.value for lv in LEVELS],
        "fields": [
            {
                "name": f.value,
                "title": f.title,
                "grades": [{"value": int(m), "label": m.name.title()} for m in f.scale],
            }
            for f in GradeField
        ],
        "images": [
            {
                "key": im.key,
                "url": f"/patients/{quote(patient_id)}/images/{im.key}",
                "title": im.title,
                "view": im.view,
                "level": im.level,
            }
            for im in images
        ],
        "gradings": gradings,
        "others": others,
        # where ingest found each disc on the sagittal image (fractions), for the level markers
        "disc_markers": {
            level: {"x": x, "y": y}
            for level, (x, y) in app.catalog.disc_markers.get(patient_id, {}).items()
        },
        "next": f"/next?after={quote(patient_id)}",
        # only where to fetch them: the page loads at once, the model runs in the background
        "suggestions": (
            f"/api/patients/{quote(patient_id)}/suggestions" if app.suggestions else None
        ),
        "suggestion_note": SUGGESTION_NOTE,
    }
    return app.render(
        request,
        "patient.html",
        patient_id=patient_id,
        data=data,
        csrf=session.csrf,
        consensus=chosen == CONSENSUS,
        position=index + 1,
        total=len(order),
    )


@router.get("/patients/{patient_id}/images/{key}")
async def image(app: LabelerApp, session: CurrentUser, patient_id: str, key: str) -> Response:
    catalog = app.catalog
    found = catalog.image(patient_id, int(key)) if key.isdigit() else None
    if found is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    # only the very file catalogued at start-up, reached without following links
    data = catalog.read_image(found)
    if data is None:
        log.warning(
            "refused image %s of patient %s: not the file catalogued at start-up "
            "(replaced, linked or gone; restart the app after a new ingest)",
            found.key,
            patient_id,
        )
        return JSONResponse({"detail": "not found"}, status_code=404)
    media_type = IMAGE_TYPES[found.path.suffix.lower()]
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})
