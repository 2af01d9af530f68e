"""FaLa's oversight pages: the audit trail and inter-rater agreement (raters see their own
part, admins everything), and the admins' pages: accounts and the export of gradings."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from lumbar.errors import UserError
from lumbar.labeler.agreement import WEIGHTS, agreement_table
from lumbar.labeler.deps import Admin, AdminWithCsrf, CurrentUser, LabelerApp
from lumbar.labeler.exchange import manifest_csv, table4_csv
from lumbar.labeler.store import FIELDS, ROLES, _label_rows

__all__ = ["router"]

router = APIRouter()


@router.get("/audit")
async def audit(
    request: Request, app: LabelerApp, session: CurrentUser, patient: str | None = None
) -> Response:
    user = session.user
    # raters see their own trail only (blinded to the others): filtered in the query, before
    # the limit, so many changes by others cannot push a rater's own entries off the page
    own = None if user.is_admin else user.id
    entries = app.store.audit(patient_id=patient or None, user_id=own, limit=1000)
    names = app.store.slot_names()
    return app.render(
        request, "audit.html", entries=entries, patient=patient or "", slot_names=names
    )


@router.get("/agreement")
async def agreement(
    request: Request, app: LabelerApp, session: CurrentUser, weights: str = "linear"
) -> Response:
    user = session.user
    if weights not in WEIGHTS:
        weights = "linear"
    rows = agreement_table(app.store, weights=weights)
    if not user.is_admin:
        rows = [r for r in rows if user.name in (r.rater_a, r.rater_b)]
    pairs: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        pairs.setdefault((r.rater_a, r.rater_b), []).append(r)
    return app.render(request, "agreement.html", pairs=pairs, weights=weights, all_weights=WEIGHTS)


@router.get("/admin/users")
async def users_page(
    request: Request, app: LabelerApp, session: Admin, message: str = ""
) -> Response:
    return app.render(
        request,
        "users.html",
        users=app.store.users(),
        csrf=session.csrf,
        roles=ROLES,
        message=message,
    )


@router.post("/admin/users")
async def create_user(request: Request, app: LabelerApp, session: AdminWithCsrf) -> Response:
    form = await request.form()
    app.store.add_user(
        str(form.get("name", "")),
        str(form.get("role", "")),
        str(form.get("password", "")),
        by=session.user.id,
    )
    return RedirectResponse("/admin/users?message=created", status_code=303)


@router.post("/admin/users/{user_id}")
async def change_user(
    request: Request, app: LabelerApp, session: AdminWithCsrf, user_id: int
) -> Response:
    user = session.user
    form = await request.form()
    role = str(form.get("role") or "") or None
    active = form.get("active")
    password = str(form.get("password") or "") or None
    if user_id == user.id and (role not in (None, "admin") or active == "0"):
        raise UserError("you cannot demote or deactivate your own account")
    app.store.update_user(
        user_id,
        by=user.id,
        role=role,
        active=None if active is None else active == "1",
        password=password,
    )
    return RedirectResponse("/admin/users?message=saved", status_code=303)


@router.get("/admin/export")
async def export(
    app: LabelerApp, session: Admin, format: str = "manifest", rater: str | None = None
) -> Response:
    chosen = rater or None
    store, catalog = app.store, app.catalog
    if format == "manifest":
        text = manifest_csv(store, catalog, catalog.root, rater=chosen)
        return Response(
            text,
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="manifest.csv"'},
        )
    if format == "table4":
        by_patient: dict[str, dict[str, dict[str, int | None]]] = {}
        for row in _label_rows(store, chosen):
            by_patient.setdefault(str(row["patient_id"]), {})[str(row["level"])] = {
                f: row[f]
                for f in FIELDS  # type: ignore[misc]
            }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for pid, grades in sorted(by_patient.items()):
                archive.writestr(f"{pid}.csv", table4_csv(grades))
        return Response(
            buffer.getvalue(),
            media_type="application/zip",
            headers={"Content-Disposition": 'attachment; filename="table4.zip"'},
        )
    raise UserError("format must be manifest or table4")
