"""What the FaLa routers share: the app's state, `Depends` for the logged-in user, the CSRF
check and admins, page rendering, and the errors the app turns into answers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from lumbar.labeler.catalog import Catalog
from lumbar.labeler.security import LoginThrottle
from lumbar.labeler.store import CONSENSUS, GradingRecord, Store, User, rater_slot

__all__ = [
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "SUGGESTION_NOTE",
    "UNSAFE",
    "Admin",
    "AdminWithCsrf",
    "CurrentUser",
    "ForbiddenError",
    "Labeler",
    "LabelerApp",
    "NotLoggedInError",
    "PatientNotFoundError",
    "Session",
    "SuggestionSource",
    "UserWithCsrf",
    "grading_json",
    "slot_for",
]

SESSION_COOKIE = "fala_session"
LOGIN_CSRF_COOKIE = "fala_login_csrf"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
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
    """No live session; turned into 401 (API, images, changes) or a redirect to /login."""


class ForbiddenError(Exception):
    """A logged-in user without the right (CSRF token missing/wrong, or not an admin)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PatientNotFoundError(Exception):
    """No such patient in the catalog; turned into 404."""


@dataclass
class Labeler:
    """The app's state: the gradings database, the images, the page templates, the cookie
    policy, the failed-login throttle and the model suggestions (if any)."""

    store: Store
    catalog: Catalog
    templates: Jinja2Templates
    throttle: LoginThrottle
    secure_cookies: bool | None = None
    suggestions: SuggestionSource | None = None

    def secure(self, request: Request) -> bool:
        """Whether cookies are marked Secure: as configured, else when the request is https."""
        if self.secure_cookies is None:
            return request.url.scheme == "https"
        return self.secure_cookies

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        """A page from its template, with the logged-in user (if any) in its context."""
        user = getattr(request.state, "user", None)
        return self.templates.TemplateResponse(
            request, name, {"user": user, **context}, status_code=status
        )

    def patient_images(self, patient_id: str) -> list[Any]:
        """The patient's images.

        Raises:
            PatientNotFoundError: no such patient.
        """
        images = self.catalog.patients.get(patient_id)
        if images is None:
            raise PatientNotFoundError
        return images


def labeler(request: Request) -> Labeler:
    """The app's `Labeler` (a dependency)."""
    return request.app.state.labeler  # type: ignore[no-any-return]


LabelerApp = Annotated[Labeler, Depends(labeler)]


@dataclass(frozen=True)
class Session:
    """The logged-in user and the session's CSRF token."""

    user: User
    csrf: str


def current_user(request: Request, app: LabelerApp) -> Session:
    """The user of the request's live session.

    Raises:
        NotLoggedInError: no session cookie, or an expired or ended session.
    """
    token = request.cookies.get(SESSION_COOKIE)
    found = app.store.session_user(token) if token else None
    if found is None:
        raise NotLoggedInError
    request.state.user = found[0]
    return Session(*found)


CurrentUser = Annotated[Session, Depends(current_user)]


async def user_with_csrf(request: Request, session: CurrentUser) -> Session:
    """The logged-in user of a state-changing request that carries the session's CSRF token
    (`X-CSRF-Token` header, or a `csrf_token` form field).

    Raises:
        ForbiddenError: the token is missing or wrong.
    """
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not sent or not secrets.compare_digest(sent, session.csrf):
        raise ForbiddenError("missing or invalid CSRF token; reload the page and try again")
    return session


UserWithCsrf = Annotated[Session, Depends(user_with_csrf)]


def _require_admin(session: Session) -> Session:
    if not session.user.is_admin:
        raise ForbiddenError("this page is for admins")
    return session


def admin(session: CurrentUser) -> Session:
    """The logged-in user, who must be an admin."""
    return _require_admin(session)


def admin_with_csrf(session: UserWithCsrf) -> Session:
    """The logged-in admin of a state-changing request (CSRF checked first)."""
    return _require_admin(session)


Admin = Annotated[Session, Depends(admin)]
AdminWithCsrf = Annotated[Session, Depends(admin_with_csrf)]


def slot_for(user: User, requested: str | None) -> str:
    """The gradings a user works on: their own, or (admins) the consensus.

    Raises:
        ForbiddenError: another slot, or the consensus for a non-admin.
    """
    if requested in (None, "", "mine"):
        return rater_slot(user.id)
    if requested == CONSENSUS:
        _require_admin(Session(user, ""))
        return CONSENSUS
    raise ForbiddenError("you can only edit your own gradings (admins: the consensus)")


def grading_json(g: GradingRecord) -> dict[str, Any]:
    """One level's grading as the pages and the API show it."""
    return {
        "grades": g.grades,
        "version": g.version,
        "updated_at": g.updated_at.isoformat(timespec="seconds"),
        "complete": g.complete,
    }
