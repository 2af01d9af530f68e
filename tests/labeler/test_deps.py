"""The routers' dependencies (`lumbar.labeler.deps`): a live session, the CSRF token, admins."""

from __future__ import annotations

from .conftest import PATIENTS, new_client


def test_forged_or_expired_session_cookie_is_refused(app) -> None:  # type: ignore[no-untyped-def]
    client = new_client(app)
    client.cookies.set("fala_session", "forged-token")
    assert client.get(f"/api/patients/{PATIENTS[0]}/gradings").status_code == 401


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
