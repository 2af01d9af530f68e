"""The FaLa web application: login, worklist, patient viewer with Table 3 forms, audit, agreement.

Security model (a hospital network, not the open internet, but treated as hostile):
- every route but `/login` and `/static` needs a live server-side session (cookie: random
  token, HttpOnly, SameSite=Strict, Secure behind https);
- every state-changing request carries the session's CSRF token (`X-CSRF-Token` header or a
  `csrf_token` form field); the login form uses a double-submit cookie;
- request bodies over `max_body` bytes are refused before they are read;
- repeated failed logins from one address or for one name are refused for a growing delay;
- pages are rendered by Jinja2 with autoescaping, under a strict Content-Security-Policy;
- images are served only by (patient, index) from the catalog, never by a client path;
- logs name users and pseudonyms only (the app never sees original patient identifiers).
"""

from __future__ import annotations

import io
import logging
import secrets
import time
import zipfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lumbar.errors import UserError
from lumbar.grading import LEVELS, DiscLevel, GradeField
from lumbar.labeler.agreement import WEIGHTS, agreement_table
from lumbar.labeler.catalog import Catalog
from lumbar.labeler.exchange import manifest_csv, table4_csv
from lumbar.labeler.store import (
    CONSENSUS,
    FIELDS,
    ROLES,
    GradingRecord,
    StaleGradingError,
    Store,
    User,
    _label_rows,
    rater_slot,
)

log = logging.getLogger("lumbar.labeler")
HERE = Path(__file__).parent
SESSION_COOKIE = "fala_session"
LOGIN_CSRF_COOKIE = "fala_login_csrf"
MAX_BODY = 64 * 1024
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


SUGGESTION_NOTE = (
    "AI suggestion from the model, not a grade: it is never saved as your grading. "
    "Grade from the images."
)


class SuggestionSource(Protocol):
    """Where model suggestions come from: `lumbar.labeler.suggestions.Suggestions` (or a
    test double)."""

    def for_patient(self, patient_id: str) -> dict[str, dict[str, Any]]:
        """{level: {"source": "model", "suggested": class, "probability": p, ...}}."""
        ...


class NotLoggedInError(Exception):
    """Raised by `require_user`; turned into 401 (API, images) or a redirect to /login."""


class ForbiddenError(Exception):
    """A logged-in user without the right (CSRF token missing/wrong, or not an admin)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LoginThrottle:
    """Failed logins per client address and per user name; too many → refuse for a while.

    After `free` failures within `window` seconds, each further failure doubles the wait
    (from 2 s up to `max_delay`); a success clears the name's and address's record.
    """

    def __init__(self, free: int = 5, window: float = 900.0, max_delay: float = 300.0) -> None:
        self.free, self.window, self.max_delay = free, window, max_delay
        self._failures: dict[str, list[float]] = {}

    def wait(self, keys: list[str], now: float | None = None) -> float:
        """Seconds the client must still wait before another attempt (0 when none)."""
        now = time.monotonic() if now is None else now
        longest = 0.0
        for key in keys:
            recent = [t for t in self._failures.get(key, []) if now - t < self.window]
            self._failures[key] = recent
            extra = len(recent) - self.free
            if extra >= 0 and recent:
                delay = min(self.max_delay, 2.0 ** (extra + 1))
                longest = max(longest, recent[-1] + delay - now)
        return max(0.0, longest)

    def fail(self, keys: list[str], now: float | None = None) -> None:
        """Record one failed attempt."""
        now = time.monotonic() if now is None else now
        if len(self._failures) > 10_000:  # bounded memory under a flood of made-up names
            self._failures = {
                k: v for k, v in self._failures.items() if v and now - v[-1] < self.window
            }
        for key in keys:
            self._failures.setdefault(key, []).append(now)

    def clear(self, keys: list[str]) -> None:
        """Forget the failures (after a successful login)."""
        for key in keys:
            self._failures.pop(key, None)


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes (413); add security headers.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which costs milliseconds a request.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLargeError
            return message

        static = scope.get("path", "").startswith("/static")

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = list(SECURITY_HEADERS)
                if not static and not any(k == b"cache-control" for k, _ in message["headers"]):
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message["headers"], *extra]}
            await send(message)

        too_large = False
        try:
            await self.app(scope, limited_receive, tracking_send)
        except* _BodyTooLargeError:  # raised while a handler reads the body
            too_large = True
        if too_large and not started:
            await _too_large(send)


class _BodyTooLargeError(Exception):
    pass


async def _too_large(send: Send) -> None:
    body = b'{"detail":"request body too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"connection", b"close"),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(
    store: Store,
    catalog: Catalog,
    *,
    secure_cookies: bool | None = None,
    max_body: int = MAX_BODY,
    throttle: LoginThrottle | None = None,
    suggestions: SuggestionSource | None = None,
) -> FastAPI:
    """Build the labeler application.

    Args:
        store: the gradings database.
        catalog: the images (from `lumbar ingest`'s images.csv).
        secure_cookies: mark cookies Secure; None: when the request came over https (also via
            a proxy's `X-Forwarded-Proto`, which uvicorn honours with --proxy-headers).
        max_body: largest accepted request body in bytes.
        throttle: failed-login bookkeeping (a fresh one by default).
        suggestions: model suggestions per disc (`lumbar.labeler.suggestions.Suggestions`),
            shown on the patient page as marked, read-only badges; None: no model, no badges.
            They are served by their own endpoint and never pass through the grading API.
    """
    app = FastAPI(title="FaLa", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(
        levels=[lv.value for lv in LEVELS],
        level_codes={lv.value: lv.code for lv in LEVELS},
        fields=FIELDS,
        field_titles={f.value: f.title for f in GradeField},
        grade_names={f.value: [m.name.title() for m in f.scale] for f in GradeField},
    )
    throttle = throttle or LoginThrottle()
    app.state.store, app.state.catalog, app.state.throttle = store, catalog, throttle
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def secure(request: Request) -> bool:
        return request.url.scheme == "https" if secure_cookies is None else secure_cookies

    def require_user(request: Request) -> tuple[User, str]:
        token = request.cookies.get(SESSION_COOKIE)
        found = store.session_user(token) if token else None
        if found is None:
            raise NotLoggedInError
        request.state.user = found[0]
        return found

    async def require_csrf(request: Request, csrf: str) -> None:
        sent = request.headers.get("x-csrf-token")
        if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get("csrf_token")
            sent = value if isinstance(value, str) else None
        if not sent or not secrets.compare_digest(sent, csrf):
            raise ForbiddenError("missing or invalid CSRF token; reload the page and try again")

    def require_admin(user: User) -> None:
        if not user.is_admin:
            raise ForbiddenError("this page is for admins")

    def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        user = getattr(request.state, "user", None)
        response = templates.TemplateResponse(
            request, name, {"user": user, **context}, status_code=status
        )
        return response

    @app.exception_handler(NotLoggedInError)
    async def not_logged_in(request: Request, _exc: NotLoggedInError) -> Response:
        path = request.url.path
        if path.startswith("/api/") or "/images/" in path or request.method in UNSAFE:
            return JSONResponse({"detail": "login required"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(ForbiddenError)
    async def forbidden(request: Request, exc: ForbiddenError) -> Response:
        if request.url.path.startswith("/api/") or request.method in UNSAFE:
            return JSONResponse({"detail": exc.message}, status_code=403)
        return render(request, "error.html", 403, title="Not allowed", message=exc.message)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return render(request, "error.html", 422, title="Cannot do that", message=str(exc))

    @app.exception_handler(404)
    async def not_found(request: Request, _exc: Exception) -> Response:
        if request.url.path.startswith("/api/") or "/images/" in request.url.path:
            return JSONResponse({"detail": "not found"}, status_code=404)
        # unknown URLs look the same to visitors whether or not they are logged in
        token = request.cookies.get(SESSION_COOKIE)
        if not (token and store.session_user(token)):
            return RedirectResponse("/login", status_code=303)
        require_user(request)
        return render(request, "error.html", 404, title="Not found", message="No such page.")

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)

    # ------------------------------------------------------------- login
    @app.get("/login")
    async def login_page(request: Request, next: str = "/") -> Response:
        # reuse the cookie so that two login tabs (or a favicon fetch) do not void each other
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
        if len(token) > 64:
            token = secrets.token_urlsafe(24)
        response = render(request, "login.html", next=_safe_next(next), login_csrf=token)
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=secure(request),
            max_age=3600,
        )
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        name = str(form.get("username", ""))[:64]
        password = str(form.get("password", ""))[:1024]
        target = _safe_next(str(form.get("next", "/")))
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        sent = str(form.get("csrf_token", ""))
        if not cookie or not secrets.compare_digest(cookie, sent):
            raise ForbiddenError("the login form expired; reload the page and try again")
        client = request.client.host if request.client else "unknown"
        keys = [f"ip:{client}", f"name:{name.lower()}"]
        wait = throttle.wait(keys)
        if wait > 0:
            log.warning("login throttled for user %r from %s", name, client)
            response = render(
                request,
                "login.html",
                429,
                next=target,
                login_csrf=cookie,
                error=f"Too many failed attempts. Try again in {int(wait) + 1} s.",
            )
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        user = store.authenticate(name, password)
        if user is None:
            throttle.fail(keys)
            log.warning("failed login for user %r from %s", name, client)
            return render(
                request,
                "login.html",
                401,
                next=target,
                login_csrf=cookie,
                error="Unknown user name or wrong password.",
            )
        throttle.clear(keys)
        token, _csrf = store.create_session(user.id)
        log.info("login: %s", user.name)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure(request)
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        user, csrf = require_user(request)
        await require_csrf(request, csrf)
        store.end_session(request.cookies.get(SESSION_COOKIE, ""))
        log.info("logout: %s", user.name)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # ---------------------------------------------------------- worklist
    def worklist_rows(user: User) -> list[dict[str, Any]]:
        mine = store.progress(rater_slot(user.id))
        every: dict[str, dict[str, int]] = {}
        names = store.slot_names()
        for g in store.gradings():
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
            for pid, images in catalog.patients.items()
        ]

    @app.get("/")
    async def worklist(request: Request, filter: str = "all") -> Response:
        user, csrf = require_user(request)
        rows = worklist_rows(user)
        if filter == "todo":
            rows = [r for r in rows if r["mine"] < len(LEVELS)]
        done = sum(1 for r in worklist_rows(user) if r["mine"] == len(LEVELS))
        return render(
            request,
            "worklist.html",
            rows=rows,
            csrf=csrf,
            filter=filter if filter in ("all", "todo") else "all",
            done=done,
            total=len(catalog.patients),
        )

    @app.get("/next")
    async def next_patient(request: Request, after: str = "") -> Response:
        user, _ = require_user(request)
        mine = store.progress(rater_slot(user.id))
        order = list(catalog.patients)
        start = order.index(after) + 1 if after in catalog.patients else 0
        for pid in order[start:] + order[:start]:
            if mine.get(pid, 0) < len(LEVELS) and pid != after:
                return RedirectResponse(f"/patients/{quote(pid)}", status_code=303)
        return RedirectResponse("/?filter=todo&done=1", status_code=303)

    # ------------------------------------------------------- patient page
    def slot_for(user: User, requested: str | None) -> str:
        if requested in (None, "", "mine"):
            return rater_slot(user.id)
        if requested == CONSENSUS:
            require_admin(user)
            return CONSENSUS
        raise ForbiddenError("you can only edit your own gradings (admins: the consensus)")

    def patient_or_404(patient_id: str) -> list[Any]:
        images = catalog.patients.get(patient_id)
        if images is None:
            raise _NotFoundError
        return images

    @app.get("/patients/{patient_id}")
    async def patient_page(request: Request, patient_id: str, slot: str | None = None) -> Response:
        user, csrf = require_user(request)
        images = patient_or_404(patient_id)
        chosen = slot_for(user, slot)
        gradings = {
            g.level: _grading_json(g) for g in store.gradings(patient_id=patient_id, slot=chosen)
        }
        others: list[dict[str, Any]] = []
        if chosen == CONSENSUS:  # the adjudicating admin sees every rater's grades
            others = [
                {"rater": g.rater, "level": g.level, "grades": g.grades}
                for g in store.gradings(patient_id=patient_id)
                if g.slot != CONSENSUS
            ]
        order = list(catalog.patients)
        index = order.index(patient_id)
        data = {
            "patient": patient_id,
            "slot": "consensus" if chosen == CONSENSUS else "mine",
            "csrf": csrf,
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
            "next": f"/next?after={quote(patient_id)}",
            # only where to fetch them: the page loads at once, the model runs in the background
            "suggestions": (
                f"/api/patients/{quote(patient_id)}/suggestions" if suggestions else None
            ),
            "suggestion_note": SUGGESTION_NOTE,
        }
        return render(
            request,
            "patient.html",
            patient_id=patient_id,
            data=data,
            csrf=csrf,
            consensus=chosen == CONSENSUS,
            position=index + 1,
            total=len(order),
        )

    @app.get("/patients/{patient_id}/images/{key}")
    async def image(request: Request, patient_id: str, key: str) -> Response:
        require_user(request)
        found = catalog.image(patient_id, int(key)) if key.isdigit() else None
        if found is None:
            return JSONResponse({"detail": "not found"}, status_code=404)
        path = found.path.resolve()
        # the catalog was checked at start-up; check again in case a link was swapped since
        if not path.is_relative_to(catalog.root) or not path.is_file():
            log.warning("refused image outside the images folder (patient %s)", patient_id)
            return JSONResponse({"detail": "not found"}, status_code=404)
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})

    # ---------------------------------------------------------------- API
    @app.get("/api/patients/{patient_id}/gradings")
    async def api_gradings(request: Request, patient_id: str, slot: str | None = None) -> Response:
        user, _ = require_user(request)
        patient_or_404(patient_id)
        chosen = slot_for(user, slot)
        rows = store.gradings(patient_id=patient_id, slot=chosen)
        return JSONResponse({"gradings": {g.level: _grading_json(g) for g in rows}})

    @app.get("/api/patients/{patient_id}/suggestions")
    async def api_suggestions(request: Request, patient_id: str) -> Response:
        """The model's suggestion per level (read-only; 404 when no model is configured)."""
        require_user(request)
        patient_or_404(patient_id)
        if suggestions is None:
            return JSONResponse({"detail": "no model configured"}, status_code=404)
        try:  # the model runs in a worker thread, not on the event loop
            found = await run_in_threadpool(suggestions.for_patient, patient_id)
        except Exception:
            log.exception("model suggestions failed for patient %s", patient_id)
            return JSONResponse({"detail": "model suggestions unavailable"}, status_code=503)
        return JSONResponse({"suggestions": found, "note": SUGGESTION_NOTE})

    @app.put("/api/patients/{patient_id}/gradings/{level}")
    async def api_save(
        request: Request, patient_id: str, level: str, slot: str | None = None
    ) -> Response:
        started = time.perf_counter()
        user, csrf = require_user(request)
        await require_csrf(request, csrf)
        patient_or_404(patient_id)
        chosen = slot_for(user, slot)
        try:
            level_value = DiscLevel.parse(level).value
        except ValueError as err:
            return JSONResponse({"detail": str(err)}, status_code=422)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "body must be JSON"}, status_code=422)
        problem = _check_save_body(body)
        if problem:
            return JSONResponse({"detail": problem}, status_code=422)
        try:
            saved = store.save_grading(
                patient_id,
                level_value,
                chosen,
                body["changes"],
                base_version=body["version"],
                by=user.id,
                action="consensus" if chosen == CONSENSUS else "grade",
            )
        except StaleGradingError:
            current = store.gradings(patient_id=patient_id, slot=chosen)
            now = next((g for g in current if g.level == level_value), None)
            detail = (
                f"Not saved: {level_value} was changed in another tab or by another user since "
                "you loaded it. The newest values are shown; check them and grade again."
            )
            return JSONResponse(
                {"detail": detail, "current": _grading_json(now) if now else None},
                status_code=409,
            )
        except ValueError as err:
            return JSONResponse({"detail": str(err)}, status_code=422)
        log.info("saved %s %s v%d by %s", patient_id, level_value, saved.version, user.name)
        took = (time.perf_counter() - started) * 1000
        # Server-Timing: the server's share of a save's latency (browser devtools show it)
        return JSONResponse(_grading_json(saved), headers={"Server-Timing": f"app;dur={took:.1f}"})

    # ------------------------------------------------------ audit, agreement
    @app.get("/audit")
    async def audit(request: Request, patient: str | None = None) -> Response:
        user, _ = require_user(request)
        entries = store.audit(patient_id=patient or None, limit=1000)
        names = store.slot_names()
        if not user.is_admin:  # raters see their own trail only (blinded to the others)
            entries = [(a, n) for a, n in entries if a.user_id == user.id]
        return render(
            request, "audit.html", entries=entries, patient=patient or "", slot_names=names
        )

    @app.get("/agreement")
    async def agreement(request: Request, weights: str = "linear") -> Response:
        user, _ = require_user(request)
        if weights not in WEIGHTS:
            weights = "linear"
        rows = agreement_table(store, weights=weights)
        if not user.is_admin:
            rows = [r for r in rows if user.name in (r.rater_a, r.rater_b)]
        pairs: dict[tuple[str, str], list[Any]] = {}
        for r in rows:
            pairs.setdefault((r.rater_a, r.rater_b), []).append(r)
        return render(request, "agreement.html", pairs=pairs, weights=weights, all_weights=WEIGHTS)

    # ---------------------------------------------------------------- admin
    @app.get("/admin/users")
    async def users_page(request: Request, message: str = "") -> Response:
        user, csrf = require_user(request)
        require_admin(user)
        return render(
            request, "users.html", users=store.users(), csrf=csrf, roles=ROLES, message=message
        )

    @app.post("/admin/users")
    async def create_user(request: Request) -> Response:
        user, csrf = require_user(request)
        await require_csrf(request, csrf)
        require_admin(user)
        form = await request.form()
        store.add_user(
            str(form.get("name", "")),
            str(form.get("role", "")),
            str(form.get("password", "")),
            by=user.id,
        )
        return RedirectResponse("/admin/users?message=created", status_code=303)

    @app.post("/admin/users/{user_id}")
    async def change_user(request: Request, user_id: int) -> Response:
        user, csrf = require_user(request)
        await require_csrf(request, csrf)
        require_admin(user)
        form = await request.form()
        role = str(form.get("role") or "") or None
        active = form.get("active")
        password = str(form.get("password") or "") or None
        if user_id == user.id and (role not in (None, "admin") or active == "0"):
            raise UserError("you cannot demote or deactivate your own account")
        store.update_user(
            user_id,
            by=user.id,
            role=role,
            active=None if active is None else active == "1",
            password=password,
        )
        return RedirectResponse("/admin/users?message=saved", status_code=303)

    @app.get("/admin/export")
    async def export(
        request: Request, format: str = "manifest", rater: str | None = None
    ) -> Response:
        user, _ = require_user(request)
        require_admin(user)
        chosen = rater or None
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

    @app.exception_handler(_BodyTooLargeError)
    async def body_too_large(_request: Request, _exc: _BodyTooLargeError) -> Response:
        return JSONResponse({"detail": "request body too large"}, status_code=413)

    @app.exception_handler(_NotFoundError)
    async def missing(request: Request, _exc: _NotFoundError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "no such patient"}, status_code=404)
        return render(request, "error.html", 404, title="Not found", message="No such patient.")

    app.add_middleware(BodyLimit, limit=max_body)
    return app


class _NotFoundError(Exception):
    pass


def _grading_json(g: GradingRecord) -> dict[str, Any]:
    return {
        "grades": g.grades,
        "version": g.version,
        "updated_at": g.updated_at.isoformat(timespec="seconds"),
        "complete": g.complete,
    }


def _check_save_body(body: object) -> str | None:
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


def _safe_next(target: str) -> str:
    """Only local paths: never redirect after login to another site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target
