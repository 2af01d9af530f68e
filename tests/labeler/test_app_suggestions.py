"""Model suggestions in the grading app: shown with a model, login-only, never saved."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from .conftest import PATIENTS, FakeSuggestions, login, new_client, save

FULL = {"disc_state": 1, "herniation": 0, "scs": 0, "rfs": 1, "lfs": 0}


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
    from lumbar.labeler.app import create_app
    from lumbar.labeler.catalog import load_catalog

    return create_app(store, load_catalog(ingest_dir), suggestions=fake)


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
    from lumbar.labeler.app import create_app
    from lumbar.labeler.catalog import load_catalog

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
        assert save(client, csrf, level, FULL).status_code == 200
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
        assert g.grades == FULL  # the rater's values only
    entries = store.audit(patient_id=PATIENTS[0])
    assert entries
    for entry, name in entries:
        assert name == "rad1" and entry.user_id == rad1.id and entry.action == "grade"
        text = " ".join(
            str(v) for v in (entry.action, entry.field, entry.old, entry.new, entry.slot)
        )
        assert "model" not in text and "abnormal" not in text and "0.87" not in text


def test_suggestions_from_a_real_model(store, ingest_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tiny_run import make_tiny_run

    from lumbar.inference.predict import Predictor
    from lumbar.labeler.app import create_app
    from lumbar.labeler.catalog import load_catalog
    from lumbar.labeler.suggestions import Suggestions

    catalog = load_catalog(ingest_dir)
    suggestions = Suggestions(Predictor.load(make_tiny_run(tmp_path / "run")), catalog)
    client = new_client(create_app(store, catalog, suggestions=suggestions))
    login(client, "rad1")
    body = client.get(f"/api/patients/{PATIENTS[1]}/suggestions").json()["suggestions"]
    assert len(body) == 5
    assert all(
        s["source"] == "model" and s["suggested"] in ("normal", "abnormal") for s in body.values()
    )


def _serve_error(monkeypatch, capsys, *args: str) -> str:  # type: ignore[no-untyped-def]
    from lumbar import cli

    monkeypatch.setattr(sys, "argv", ["lumbar", "label", "serve", *args])
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("the server started"))
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_serve_with_a_bad_model_fails_at_startup(  # type: ignore[no-untyped-def]
    monkeypatch, capsys, ingest_dir: Path, tmp_path: Path
) -> None:
    from tiny_run import make_tiny_run

    db = str(tmp_path / "fala.db")
    base = ("--images", str(ingest_dir), "--db", db)
    assert "not a run folder" in _serve_error(
        monkeypatch, capsys, *base, "--model", str(tmp_path / "missing")
    )

    def fails(self, patient_id: str) -> dict:  # type: ignore[no-untyped-def]
        raise RuntimeError("size mismatch\nlong traceback-like detail")

    monkeypatch.setattr("lumbar.labeler.suggestions.Suggestions.for_patient", fails)
    run = make_tiny_run(tmp_path / "run")
    err = _serve_error(monkeypatch, capsys, *base, "--model", str(run))
    assert "fails on the images" in err and "size mismatch" in err
