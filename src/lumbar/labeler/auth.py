"""FaLa's login and logout (`/login`, `/logout`): server-side sessions behind an HttpOnly,
SameSite=Strict cookie; the login form uses a double-submit CSRF cookie and is throttled."""

from __future__ import annotations

import logging
import secrets
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from lumbar.labeler.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ForbiddenError,
    LabelerApp,
    UserWithCsrf,
)

__all__ = ["router"]

log = logging.getLogger("lumbar.labeler")
router = APIRouter()


@router.get("/login")
async def login_page(request: Request, app: LabelerApp, next: str = "/") -> Response:
    # reuse the cookie so that two login tabs (or a favicon fetch) do not void each other
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    if len(token) > 64:
        token = secrets.token_urlsafe(24)
    response = app.render(request, "login.html", next=_safe_next(next), login_csrf=token)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=app.secure(request),
        max_age=3600,
    )
    return response


@router.post("/login")
async def login(request: Request, app: LabelerApp) -> Response:
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
    wait = app.throttle.wait(keys)
    if wait > 0:
        log.warning("login throttled for user %r from %s", name, client)
        response = app.render(
            request,
            "login.html",
            429,
            next=target,
            login_csrf=cookie,
            error=f"Too many failed attempts. Try again in {int(wait) + 1} s.",
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    user = app.store.authenticate(name, password)
    if user is None:
        app.throttle.fail(keys)
        log.warning("failed login for user %r from %s", name, client)
        return app.render(
            request,
            "login.html",
            401,
            next=target,
            login_csrf=cookie,
            error="Unknown user name or wrong password.",
        )
    app.throttle.clear(keys)
    token, _csrf = app.store.create_session(user.id)
    log.info("login: %s", user.name)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="strict", secure=app.secure(request)
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, app: LabelerApp, session: UserWithCsrf) -> Response:
    app.store.end_session(request.cookies.get(SESSION_COOKIE, ""))
    log.info("logout: %s", session.user.name)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _safe_next(target: str) -> str:
    """Only local paths: never redirect after login to another site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target
