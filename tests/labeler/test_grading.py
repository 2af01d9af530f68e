"""The grading API (`lumbar.labeler.grading`): saving with versions, validation, and the
model's suggestions, which are shown but never saved."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lumbar.labeler.app import create_app
from lumbar.labeler.catalog import load_catalog

from .conftest import PATIENTS, FakeSuggestions, login, new_client, save

FULL = {"disc_state": 3, "herniation": 2, "scs": 1, "rfs": 0, "lfs": 2}
RATED = {"disc_state": 1, "herniation": 0, "scs": 0, "rfs": 1, "lfs": 0}


def _page_data(client, patient: str = PATIENTS[0]) -> dict:  # type: ignore[no-untyped-def]
    page = client.get(f"/patients/{patient}")
    assert page.status_code == 200
    found = re.search(r'<script type="application/json" id="fala-data">(.*?)</script>', page.text)
    assert found is not None
    return json.loads(found.group(1))


@pytest.fixture
def fake() -> FakeSuggestions:
    """The stand-in model."""
    return FakeSuggestions()


@pytest.fixture
def model_app(store, ingest_dir: Path, fake: FakeSuggestions):  # type: ignore[no-untyped-def]
    """The app with (fake) model suggestions configured."""
    return create_app(store, load_catalog(ingest_dir), suggestions=fake)


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


def test_suggestions_shown_when_configured_and_need_login(model_app, fake) -> None:  # type: ignore[no-untyped-def]
    anonymous = new_client(model_app)
    url = f"/api/patients/{PATIENTS[0]}/suggestions"
    assert anonymous.get(url).status_code == 401
    assert fake.calls == []  # the model never runs for a client without a session
    client = new_client(model_app)
    login(client, "rad1")
    data = _page_data(client)
    assert data["suggestions"] == url and "not a grade" in data["suggestion_note"]
    body = client.get(url).json()
    assert set(body["suggestions"]) == {"L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"}
    assert body["suggestions"]["L4-L5"]["source"] == "model"
    assert body["suggestions"]["L4-L5"]["probability"] == 0.87
    assert client.get("/api/patients/Pzzzz00000009/suggestions").status_code == 404


def test_no_suggestions_without_a_model(rad1) -> None:  # type: ignore[no-untyped-def]
    client, _ = rad1
    assert _page_data(client)["suggestions"] is None
    response = client.get(f"/api/patients/{PATIENTS[0]}/suggestions")
    assert response.status_code == 404 and response.json()["detail"] == "no model configured"


def test_model_failure_is_a_503_not_a_crash(store, ingest_dir: Path) -> None:  # type: ignore[no-untyped-def]
    class Broken:
        def for_patient(self, patient_id: str) -> dict:
            raise RuntimeError("boom")

    client = new_client(create_app(store, load_catalog(ingest_dir), suggestions=Broken()))
    login(client, "rad1")
    response = client.get(f"/api/patients/{PATIENTS[0]}/suggestions")
    assert response.status_code == 503 and "boom" not in response.text


def test_suggestions_are_never_saved_as_grades(model_app, store) -> None:  # type: ignore[no-untyped-def]
    client = new_client(model_app)
    csrf = login(client, "rad1")
    _page_data(client)
    assert client.get(f"/api/patients/{PATIENTS[0]}/suggestions").status_code == 200
    for level in ("L4-L5", "L5-S1"):
        assert save(client, csrf, level, RATED).status_code == 200
    # the grading API takes grades 0-3 per Table 3 field, nothing else: no way to send the model's
    tagged = client.put(
        f"/api/patients/{PATIENTS[0]}/gradings/L1-L2",
        json={"version": 0, "changes": {"disc_state": 2}, "source": "model"},
        headers={"X-CSRF-Token": csrf},
    )
    assert tagged.status_code == 422
    assert save(client, csrf, "L1-L2", {"suggested": "abnormal"}).status_code == 422
    assert save(client, csrf, "L1-L2", {"disc_state": 0.87}).status_code == 422

    rad1 = store.user_by_name("rad1")
    stored = store.gradings(patient_id=PATIENTS[0])
    assert {g.level for g in stored} == {"L4-L5", "L5-S1"}
    for g in stored:
        assert g.grades == RATED  # the rater's values only
    entries = store.audit(patient_id=PATIENTS[0])
    assert entries
    for entry, name in entries:
        assert name == "rad1" and entry.user_id == rad1.id and entry.action == "grade"
        text = " ".join(
            str(v) for v in (entry.action, entry.field, entry.old, entry.new, entry.slot)
        )
        assert "model" not in text and "abnormal" not in text and "0.87" not in text
