"""Login and logout (`lumbar.labeler.auth`): cookies, the login form's token, throttling,
no open redirect."""

from __future__ import annotations

import re
from pathlib import Path

from lumbar.labeler.app import create_app
from lumbar.labeler.catalog import load_catalog
from lumbar.labeler.security import LoginThrottle

from .conftest import PASSWORDS, PATIENTS, new_client


def test_session_cookie_flags(app) -> None:  # type: ignore[no-untyped-def]
    client = new_client(app)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/login", data={"username": "rad1", "password": PASSWORDS["rad1"], "csrf_token": token}
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_secure_cookie_when_asked(store, ingest_dir: Path) -> None:  # type: ignore[no-untyped-def]
    client = new_client(create_app(store, load_catalog(ingest_dir), secure_cookies=True))
    assert "secure" in client.get("/login").headers["set-cookie"].lower()


def test_login_form_without_its_token_is_refused(app) -> None:  # type: ignore[no-untyped-def]
    client = new_client(app)
    response = client.post("/login", data={"username": "rad1", "password": PASSWORDS["rad1"]})
    assert response.status_code == 403
    assert "fala_session" not in response.headers.get("set-cookie", "")


def test_repeated_failed_logins_are_slowed_down(store, ingest_dir: Path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(store, load_catalog(ingest_dir), throttle=LoginThrottle(free=3))
    client = new_client(app)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    def attempt(password: str) -> int:
        data = {"username": "rad1", "password": password, "csrf_token": token}
        return client.post("/login", data=data).status_code

    assert [attempt("wrong") for _ in range(3)] == [401, 401, 401]
    assert attempt("wrong") == 429
    response = client.post(
        "/login", data={"username": "rad1", "password": PASSWORDS["rad1"], "csrf_token": token}
    )
    assert response.status_code == 429  # even the right password waits
    assert int(response.headers["Retry-After"]) >= 1


def test_open_redirect_after_login_is_refused(app) -> None:  # type: ignore[no-untyped-def]
    for target in ("https://evil.example/", "//evil.example/x"):
        client = new_client(app)
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        response = client.post(
            "/login",
            data={
                "username": "rad1",
                "password": PASSWORDS["rad1"],
                "csrf_token": token,
                "next": target,
            },
        )
        assert response.headers["location"] == "/"


def test_logout_ends_the_session(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get(f"/api/patients/{PATIENTS[0]}/gradings").status_code == 401
