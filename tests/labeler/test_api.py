"""The web app through FastAPI's test client on a real SQLite file: grading flow, raters, admin."""

from __future__ import annotations

import io
import zipfile

from .conftest import PATIENTS, login, new_client, save

FULL = {"disc_state": 3, "herniation": 2, "scs": 1, "rfs": 0, "lfs": 2}
LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


def test_worklist_progress_filter_and_next(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    page = client.get("/")
    assert page.status_code == 200
    assert all(p in page.text for p in PATIENTS)
    for level in LEVELS:
        assert save(client, csrf, level, FULL).status_code == 200
    page = client.get("/")
    assert "5/5" in page.text
    todo = client.get("/?filter=todo").text
    assert PATIENTS[0] not in todo and PATIENTS[1] in todo
    # "next patient" skips what I finished
    assert client.get("/next").headers["location"] == f"/patients/{PATIENTS[1]}"
    after = client.get(f"/next?after={PATIENTS[1]}").headers["location"]
    assert after == f"/patients/{PATIENTS[2]}"


def test_patient_page_has_images_forms_and_token(rad1) -> None:  # type: ignore[no-untyped-def]
    client, _ = rad1
    page = client.get(f"/patients/{PATIENTS[0]}")
    assert page.status_code == 200
    for i in range(8):
        assert f"/patients/{PATIENTS[0]}/images/{i}" in page.text
    assert "Sagittal T2" in page.text and "Axial T2 L5-S1" in page.text
    assert "Sequestration" in page.text  # Table 3 names come from lumbar.grading
    assert "/static/viewer.js" in page.text
    assert client.get("/static/viewer.js").status_code == 200


def test_stale_save_is_refused_with_a_clear_message(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    assert save(client, csrf, "L4-L5", {"disc_state": 2}).status_code == 200
    # a second tab, loaded before the first save, still holds version 0
    stale = save(client, csrf, "L4-L5", {"disc_state": 1}, version=0)
    assert stale.status_code == 409
    body = stale.json()
    assert "changed in another tab or by another user" in body["detail"]
    assert body["current"]["grades"]["disc_state"] == 2 and body["current"]["version"] == 1
    stored = client.get(f"/api/patients/{PATIENTS[0]}/gradings").json()["gradings"]
    assert stored["L4-L5"]["grades"]["disc_state"] == 2  # no lost update


def test_second_rater_sees_an_empty_form(app, rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    save(client, csrf, "L4-L5", FULL)
    other = new_client(app)
    login(other, "rad2")
    assert other.get(f"/api/patients/{PATIENTS[0]}/gradings").json() == {"gradings": {}}
    # and raters cannot write anyone else's slot
    ocsrf = login(other, "rad2")
    assert save(other, ocsrf, "L4-L5", {"scs": 1}, slot="consensus").status_code == 403
    assert save(other, ocsrf, "L4-L5", {"scs": 1}, slot="rater:1").status_code == 403


def test_audit_page_shows_changes(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    save(client, csrf, "L4-L5", {"disc_state": 2})
    save(client, csrf, "L4-L5", {"disc_state": 3}, version=1)
    page = client.get(f"/audit?patient={PATIENTS[0]}").text
    assert "Disc state" in page and "rad1" in page
    assert page.count("L4-L5") >= 2


def test_admin_adjudicates_consensus_seeing_raters(app, admin, rad1) -> None:  # type: ignore[no-untyped-def]
    rclient, rcsrf = rad1
    save(rclient, rcsrf, "L4-L5", FULL)
    client, csrf = admin
    page = client.get(f"/patients/{PATIENTS[0]}?slot=consensus")
    assert page.status_code == 200 and '"rater": "rad1"' in page.text
    assert save(client, csrf, "L4-L5", FULL, slot="consensus").status_code == 200
    export = client.get("/admin/export?format=manifest")
    assert export.status_code == 200
    lines = export.text.splitlines()
    assert lines[0] == "image,patient_id,level,view,disc_state,herniation,scs,rfs,lfs"
    row = next(line for line in lines if f"{PATIENTS[0]},L4-L5" in line)
    assert row.endswith(",3,2,1,0,2")
    table4 = client.get("/admin/export?format=table4")
    names = zipfile.ZipFile(io.BytesIO(table4.content)).namelist()
    assert names == [f"{PATIENTS[0]}.csv"]


def test_agreement_page(app, rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    other = new_client(app)
    ocsrf = login(other, "rad2")
    for i, level in enumerate(LEVELS):
        grades = {"disc_state": i % 3, "scs": i % 4, "rfs": 0, "lfs": 1}
        save(client, csrf, level, grades)
        save(other, ocsrf, level, grades)
    page = client.get("/agreement").text
    assert "rad1 × rad2" in page and "1.00" in page


def test_admin_user_management(admin, app, store) -> None:  # type: ignore[no-untyped-def]
    client, csrf = admin
    form = {"name": "rad3", "role": "radiologist", "password": "rad3-pass-1", "csrf_token": csrf}
    assert client.post("/admin/users", data=form).status_code == 303
    assert "rad3" in client.get("/admin/users").text
    fresh = new_client(app)
    login(fresh, "rad3", "rad3-pass-1")
    me = store.user_by_name("admin")
    refused = client.post(f"/admin/users/{me.id}", data={"csrf_token": csrf, "role": "radiologist"})
    assert refused.status_code == 422  # no admin can lock themselves out
