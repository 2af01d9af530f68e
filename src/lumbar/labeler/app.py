"""The FaLa web application: login, worklist, patient viewer with Table 3 forms, audit, agreement.

`create_app` puts together the routers (`auth`, `worklist`, `grading`, `admin`), which get the
logged-in user and the CSRF check through `Depends` (`lumbar.labeler.deps`).

Security model (a hospital network, not the open internet, but treated as hostile):
- every route but `/login` and `/static` needs a live server-side session (cookie: random
  token, HttpOnly, SameSite=Strict, Secure behind https);
- every state-changing request carries the session's CSRF token (`X-CSRF-Token` header or a
  `csrf_token` form field); the login form uses a double-submit cookie;
- request bodies over `max_body` bytes are refused before they are read;
- repeated failed logins from one address or for one name are refused for a growing delay;
  the address is the direct peer's, unless that peer is a reverse proxy declared with
  `--trusted-proxy` (only then is its `X-Forwarded-For` believed);
- pages are rendered by Jinja2 with autoescaping, under a strict Content-Security-Policy;
- images are served only by (patient, index) from the catalog, never by a client path;
- logs name users and pseudonyms only (the app never sees original patient identifiers).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from lumbar.errors import UserError
from lumbar.grading import LEVELS, GradeField
from lumbar.labeler import admin, auth, grading, worklist
from lumbar.labeler.catalog import Catalog, load_catalog
from lumbar.labeler.deps import (
    SESSION_COOKIE,
    UNSAFE,
    ForbiddenError,
    Labeler,
    NotLoggedInError,
    PatientNotFoundError,
    SuggestionSource,
)
from lumbar.labeler.security import MAX_BODY, BodyLimit, BodyTooLargeError, LoginThrottle
from lumbar.labeler.store import FIELDS, Store
from lumbar.labeler.suggestions import DiscModel, Suggestions

__all__ = ["LoginThrottle", "create_app", "parse_trusted_proxies", "serve"]

HERE = Path(__file__).parent


def create_app(
    store: Store,
    catalog: Catalog,
    *,
    secure_cookies: bool | None = None,
    max_body: int = MAX_BODY,
    throttle: LoginThrottle | None = None,
    suggestions: SuggestionSource | None = None,
    trusted_proxies: Sequence[str] = (),
) -> FastAPI:
    """Build the labeler application.

    Args:
        store: the gradings database.
        catalog: the images (from `lumbar ingest`'s images.csv).
        secure_cookies: mark cookies Secure; None: when the request came over https (also via
            the `X-Forwarded-Proto` of a trusted proxy).
        max_body: largest accepted request body in bytes.
        throttle: failed-login bookkeeping (a fresh one by default).
        suggestions: model suggestions per disc (`lumbar.labeler.suggestions.Suggestions`),
            shown on the patient page as marked, read-only badges; None: no model, no badges.
            They are served by their own endpoint and never pass through the grading API.
        trusted_proxies: addresses or networks (`parse_trusted_proxies`) of reverse proxies
            whose `X-Forwarded-For`/`-Proto` are believed, and only when the request comes
            straight from one of them; empty (the default): the headers are ignored, so a
            client cannot pick the address the login throttle counts against.
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
    labeler = Labeler(store, catalog, templates, throttle, secure_cookies, suggestions)
    app.state.labeler = labeler
    app.state.store, app.state.catalog, app.state.throttle = store, catalog, throttle
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _add_error_pages(app, labeler)

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)

    for module in (auth, worklist, grading, admin):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, limit=max_body)
    if trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(trusted_proxies))
    return app


def parse_trusted_proxies(values: Sequence[str]) -> list[str]:
    """Check `--trusted-proxy` values: each an IP address or network (`10.0.0.0/8`).

    Raises:
        UserError: a value that is not one (host names are refused: they would be resolved
            by nobody, and `*` would trust every client again).
    """
    checked = []
    for value in values:
        try:
            checked.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise UserError(
                f"trusted proxy {value!r} is not an IP address or network (e.g. 127.0.0.1, "
                "10.0.0.0/8)",
                option="trusted_proxy",
            ) from None
    return checked


def _add_error_pages(app: FastAPI, labeler: Labeler) -> None:
    """How the app answers what its routes raise: JSON for the API, images and changes,
    pages (or the login) for a browser's page request."""

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
        return labeler.render(request, "error.html", 403, title="Not allowed", message=exc.message)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return labeler.render(request, "error.html", 422, title="Cannot do that", message=str(exc))

    @app.exception_handler(404)
    async def not_found(request: Request, _exc: Exception) -> Response:
        if request.url.path.startswith("/api/") or "/images/" in request.url.path:
            return JSONResponse({"detail": "not found"}, status_code=404)
        # unknown URLs look the same to visitors whether or not they are logged in
        token = request.cookies.get(SESSION_COOKIE)
        found = labeler.store.session_user(token) if token else None
        if found is None:
            return RedirectResponse("/login", status_code=303)
        request.state.user = found[0]
        return labeler.render(
            request, "error.html", 404, title="Not found", message="No such page."
        )

    @app.exception_handler(BodyTooLargeError)
    async def body_too_large(_request: Request, _exc: BodyTooLargeError) -> Response:
        return JSONResponse({"detail": "request body too large"}, status_code=413)

    @app.exception_handler(PatientNotFoundError)
    async def missing(request: Request, _exc: PatientNotFoundError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "no such patient"}, status_code=404)
        return labeler.render(
            request, "error.html", 404, title="Not found", message="No such patient."
        )


def serve(
    images: Path,
    db: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    secure_cookies: bool | None = None,
    model: DiscModel | None = None,
    trusted_proxies: Sequence[str] = (),
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the grading app on `host`:`port` until stopped (every page needs a login).

    Args:
        images: the output folder of `lumbar ingest` (images.csv).
        db: the gradings database (a SQLite file, or a URL).
        model: show its suggestion per disc (never saved); it is tried on the first patient
            before the server starts.
        trusted_proxies: see `create_app`; none by default.
        echo: where the start-up notes go.

    Raises:
        UserError: no readable ingest folder or database, or a model that fails on the images.
    """

    import uvicorn

    proxies = parse_trusted_proxies(trusted_proxies)
    catalog = load_catalog(images)
    suggestions = None
    if model is not None:
        suggestions = Suggestions(model, catalog)
        suggestions.check()
        echo(
            f"model suggestions from {model.model_info()['run']} (shown as AI suggestions, "
            "never saved)"
        )
    store = Store(db)
    if not store.users():
        echo("note: no accounts yet; create one: lumbar label add-user NAME --role admin")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    echo(f"FaLa: {len(catalog.patients)} patients; open http://{shown}:{port}/")
    if proxies:
        echo(f"trusting X-Forwarded-For/-Proto from {', '.join(proxies)} only")
    app = create_app(
        store,
        catalog,
        secure_cookies=secure_cookies,
        suggestions=suggestions,
        trusted_proxies=proxies,
    )
    # uvicorn's own proxy handling is off: it would trust 127.0.0.1 (or $FORWARDED_ALLOW_IPS)
    uvicorn.run(app, host=host, port=port, proxy_headers=False, log_level="info")
