"""The issue's "bad input and security" list, one test (or more) per item."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest

from lumbar.errors import UserError
from lumbar.labeler.app import create_app
from lumbar.labeler.catalog import load_catalog
from lumbar.labeler.security import LoginThrottle

from .conftest import PASSWORDS, PATIENTS, login, new_client, save, write_ingest

PUBLIC = {"/login", "/favicon.ico"}
FILL = {"patient_id": PATIENTS[0], "level": "L4-L5", "key": "0", "user_id": "1"}


def _routes(app):  # type: ignore[no-untyped-def]
    """Every route of the app and its routers (the schema lists them all)."""
    for route, methods in app.openapi()["paths"].items():
        if route not in PUBLIC:
            path = re.sub(r"\{(\w+)\}", lambda m: FILL[m.group(1)], route)
            for method in methods:
                yield method.upper(), path


def test_every_route_refuses_unauthenticated_requests(app) -> None:  # type: ignore[no-untyped-def]
    client = new_client(app)
    routes = list(_routes(app))
    assert len(routes) >= 13  # the test covers the app's routes, not an empty list
    for method, path in routes:
        response = client.request(method, path, json={"version": 0, "changes": {"scs": 1}})
        if response.status_code == 303:
            assert response.headers["location"].startswith("/login"), (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code)
        assert PATIENTS[0] not in response.text or response.status_code == 303


def test_unknown_urls_and_images_need_login_too(app) -> None:  # type: ignore[no-untyped-def]
    client = new_client(app)
    assert client.get(f"/patients/{PATIENTS[0]}/images/3").status_code == 401
    assert client.get("/no/such/page").headers["location"].startswith("/login")


def test_forged_or_expired_session_cookie_is_refused(app) -> None:  # type: ignore[no-untyped-def]
    client = new_client(app)
    client.cookies.set("fala_session", "forged-token")
    assert client.get(f"/api/patients/{PATIENTS[0]}/gradings").status_code == 401


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


def test_post_without_valid_csrf_token_is_refused(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    url = f"/api/patients/{PATIENTS[0]}/gradings/L4-L5"
    body = {"version": 0, "changes": {"disc_state": 1}}
    assert client.put(url, json=body).status_code == 403
    assert client.put(url, json=body, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert client.put(url, json=body, headers={"X-CSRF-Token": csrf}).status_code == 200


def test_admin_forms_need_csrf_and_admin(admin, rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = admin
    form = {"name": "rad3", "role": "radiologist", "password": "rad3-pass-1"}
    assert client.post("/admin/users", data=form).status_code == 403
    assert client.post("/admin/users", data={**form, "csrf_token": csrf}).status_code == 303
    rclient, rcsrf = rad1
    form2 = {**form, "name": "rad4", "csrf_token": rcsrf}
    assert rclient.post("/admin/users", data=form2).status_code == 403
    assert rclient.get("/admin/users").status_code == 403
    assert rclient.get("/admin/export?format=manifest").status_code == 403


def test_login_form_without_its_token_is_refused(app) -> None:  # type: ignore[no-untyped-def]
    client = new_client(app)
    response = client.post("/login", data={"username": "rad1", "password": PASSWORDS["rad1"]})
    assert response.status_code == 403
    assert "fala_session" not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("value", [4, -1, 2.5, "2", True, "1; DROP TABLE gradings"])
def test_grades_outside_0_3_are_rejected(rad1, value) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    assert save(client, csrf, "L4-L5", {"scs": value}).status_code == 422


def test_unknown_level_field_and_bad_body_are_rejected(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    assert save(client, csrf, "L6-L7", {"scs": 1}).status_code == 422
    assert save(client, csrf, "L4-L5", {"colour": 1}).status_code == 422
    assert save(client, csrf, "L4-L5", {}).status_code == 422
    url = f"/api/patients/{PATIENTS[0]}/gradings/L4-L5"
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    assert client.put(url, content=b"{not json", headers=headers).status_code == 422
    assert client.put(url, json=[1, 2], headers=headers).status_code == 422
    # herniation type on a disc that is not herniated (Table 3)
    assert save(client, csrf, "L4-L5", {"disc_state": 1, "herniation": 2}).status_code == 422


def test_unknown_patient_is_404(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    assert save(client, csrf, "L4-L5", {"scs": 1}, patient="Pnobody").status_code == 404
    assert client.get("/patients/Pnobody").status_code == 404


def test_oversize_body_is_refused(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    url = f"/api/patients/{PATIENTS[0]}/gradings/L4-L5"
    big = b'{"version": 0, "changes": {"scs": 1}, "pad": "' + b"x" * 100_000 + b'"}'
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    assert client.put(url, content=big, headers=headers).status_code == 413

    def chunks():  # no Content-Length: the limit is counted while reading
        for _ in range(100):
            yield b"x" * 1024

    assert client.put(url, content=chunks(), headers=headers).status_code == 413
    assert client.post("/login", content=b"a=" + b"x" * 100_000).status_code == 413


SQLI = "x' OR '1'='1'; DROP TABLE gradings; --"


def test_sql_injection_strings_are_inert(app, store, rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    assert save(client, csrf, "L4-L5", {"scs": 1}).status_code == 200
    anon = new_client(app)
    page = anon.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = anon.post("/login", data={"username": SQLI, "password": SQLI, "csrf_token": token})
    assert response.status_code == 401
    assert client.get(f"/patients/{SQLI}").status_code == 404
    assert client.get("/audit", params={"patient": SQLI}).status_code == 200
    assert save(client, csrf, SQLI, {"scs": 1}).status_code in (404, 422)
    assert len(store.gradings()) == 1  # the table is still there, with its row


HTML = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_html_in_fields_is_escaped(admin, store) -> None:  # type: ignore[no-untyped-def]
    client, csrf = admin
    # user names refuse markup outright
    response = client.post(
        "/admin/users",
        data={"name": HTML, "role": "radiologist", "password": "long-enough-1", "csrf_token": csrf},
    )
    assert response.status_code == 422
    assert "<script>" not in response.text
    # whatever is echoed back (a query parameter here) is escaped
    page = client.get("/audit", params={"patient": HTML})
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_html_in_catalog_ids_is_refused(tmp_path: Path) -> None:
    folder = write_ingest(tmp_path / "ingest", patients=("Pok1",))
    text = (folder / "images.csv").read_text().replace("Pok1,", "<b>x</b>,", 1)
    (folder / "images.csv").write_text(text)
    with pytest.raises(UserError, match="pseudonym"):
        load_catalog(folder)


def test_image_paths_outside_the_folder_are_refused(tmp_path: Path) -> None:
    folder = write_ingest(tmp_path / "ingest", patients=("Pok1",))
    secret = tmp_path / "secret.png"
    shutil.copy(folder / "Pok1" / "Pok1_1.png", secret)
    original = (folder / "images.csv").read_text()
    for bad in ("../secret.png", str(secret), "Pok1/../../secret.png"):
        (folder / "images.csv").write_text(original.replace("Pok1/Pok1_1.png", bad, 1))
        with pytest.raises(UserError, match="inside the images folder"):
            load_catalog(folder)
    # a symbolic link pointing out of the folder is refused too
    (folder / "Pok1" / "link.png").symlink_to(secret)
    (folder / "images.csv").write_text(original.replace("Pok1/Pok1_1.png", "Pok1/link.png", 1))
    with pytest.raises(UserError, match="inside the images folder"):
        load_catalog(folder)


def test_image_urls_cannot_traverse(rad1) -> None:  # type: ignore[no-untyped-def]
    client, _ = rad1
    for url in (
        f"/patients/{PATIENTS[0]}/images/../../../../etc/passwd",
        f"/patients/{PATIENTS[0]}/images/..%2F..%2Fimages.csv",
        f"/patients/{PATIENTS[0]}/images/99",
        f"/patients/{PATIENTS[0]}/images/-1",
        "/patients/..%2F..%2Fetc/images/0",
    ):
        response = client.get(url)
        assert response.status_code in (303, 404), url
        assert b"root:" not in response.content
    assert client.get(f"/patients/{PATIENTS[0]}/images/0").headers["content-type"] == "image/png"


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


def test_throttle_delay_grows_and_expires() -> None:
    throttle = LoginThrottle(free=2, window=100.0, max_delay=30.0)
    keys = ["ip:x"]
    throttle.fail(keys, now=0.0)
    assert throttle.wait(keys, now=0.1) == 0
    throttle.fail(keys, now=1.0)
    first = throttle.wait(keys, now=1.0)
    throttle.fail(keys, now=1.0)
    assert throttle.wait(keys, now=1.0) > first > 0
    assert throttle.wait(keys, now=200.0) == 0


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


def test_logs_carry_no_patient_identifiers(
    app, ingest_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """The app never sees original ids; its own log lines name users and pseudonyms only."""
    original_ids = ["ANON-12345", "Doe^John"]
    caplog.set_level(logging.DEBUG)
    client = new_client(app)
    csrf = login(client, "rad1")
    save(client, csrf, "L4-L5", {"disc_state": 2})
    save(client, csrf, "L4-L5", {"disc_state": 3})  # stale: logged as refused
    client.get(f"/patients/{PATIENTS[0]}/images/0")
    text = caplog.text
    assert "saved" in text
    for word in [*original_ids, PASSWORDS["rad1"], csrf]:
        assert word not in text
    for record in caplog.records:
        for token in re.findall(r"\bP[0-9a-z]{6,}\b", record.getMessage()):
            assert token in PATIENTS  # anything patient-like is one of the pseudonyms


def test_logout_ends_the_session(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get(f"/api/patients/{PATIENTS[0]}/gradings").status_code == 401


def test_disabled_user_loses_access(admin, app, store) -> None:  # type: ignore[no-untyped-def]
    client = new_client(app)
    csrf = login(client, "rad2")
    aclient, acsrf = admin
    rad2 = store.user_by_name("rad2")
    r = aclient.post(f"/admin/users/{rad2.id}", data={"csrf_token": acsrf, "active": "0"})
    assert r.status_code == 303
    assert save(client, csrf, "L4-L5", {"scs": 1}).status_code == 401
