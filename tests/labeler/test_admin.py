"""Oversight and admin pages (`lumbar.labeler.admin`): audit, agreement, consensus, accounts."""

from __future__ import annotations

import io
import zipfile

from .conftest import PATIENTS, login, new_client, save

LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


FULL = {"disc_state": 3, "herniation": 2, "scs": 1, "rfs": 0, "lfs": 2}


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


def test_disabled_user_loses_access(admin, app, store) -> None:  # type: ignore[no-untyped-def]
    client = new_client(app)
    csrf = login(client, "rad2")
    aclient, acsrf = admin
    rad2 = store.user_by_name("rad2")
    r = aclient.post(f"/admin/users/{rad2.id}", data={"csrf_token": acsrf, "active": "0"})
    assert r.status_code == 303
    assert save(client, csrf, "L4-L5", {"scs": 1}).status_code == 401


def test_rater_audit_keeps_own_entries_after_many_changes_by_others(rad1, store) -> None:  # type: ignore[no-untyped-def]
    """Issue 17 defect 7: the newest entries were taken before filtering by rater, so 1,000
    changes by someone else pushed a rater's own entries off their audit page."""
    from lumbar.labeler.store import AuditEntry, utcnow

    client, csrf = rad1
    assert save(client, csrf, "L4-L5", {"disc_state": 2}).status_code == 200
    rad2 = store.user_by_name("rad2")
    with store.session() as s:
        s.add_all(
            AuditEntry(
                at=utcnow(),
                user_id=rad2.id,
                action="grading",
                patient_id=PATIENTS[0],
                level="L1-L2",
                field="disc_state",
                old=None,
                new=str(i % 4 + 1),
            )
            for i in range(1200)
        )
        s.commit()
    page = client.get("/audit").text
    assert "Disc state" in page and "L4-L5" in page  # rad1's own change is still listed
    assert "rad2" not in page  # and nobody else's
    patient_page = client.get(f"/audit?patient={PATIENTS[0]}").text
    assert "L4-L5" in patient_page and "rad2" not in patient_page
