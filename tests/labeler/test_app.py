"""The whole FaLa app (`lumbar.labeler.app`): every route needs a login, hostile input is
inert, logs carry no patient ids, start-up checks, and a real browser end to end."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lumbar.labeler.app import create_app
from lumbar.labeler.catalog import load_catalog

from .conftest import (
    PASSWORDS,
    PATIENTS,
    FakeSuggestions,
    fast_hasher,
    login,
    make_store,
    new_client,
    save,
)

PUBLIC = {"/login", "/favicon.ico"}


FILL = {"patient_id": PATIENTS[0], "level": "L4-L5", "key": "0", "user_id": "1"}


def _routes(app):  # type: ignore[no-untyped-def]
    """Every route of the app and its routers (the schema lists them all)."""
    for route, methods in app.openapi()["paths"].items():
        if route not in PUBLIC:
            path = re.sub(r"\{(\w+)\}", lambda m: FILL[m.group(1)], route)
            for method in methods:
                yield method.upper(), path


SQLI = "x' OR '1'='1'; DROP TABLE gradings; --"


HTML = "<script>alert(1)</script><img src=x onerror=alert(2)>"


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


def _served_app(monkeypatch, *args: str):  # type: ignore[no-untyped-def]
    """The ASGI app exactly as `lumbar label serve ARGS` hands it to uvicorn, wrapped the way
    uvicorn wraps it (its proxy-header middleware included when asked for)."""
    import uvicorn

    from lumbar import cli

    captured: dict = {}
    hasher = fast_hasher()
    monkeypatch.setattr("argon2.PasswordHasher", lambda **_: hasher)  # the Store serve() makes
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.setattr(sys, "argv", ["lumbar", "label", "serve", *args])
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: captured.update(app=app, kw=kw))
    try:
        cli.main()
    except SystemExit as exited:
        assert exited.code in (0, None)
    config = uvicorn.Config(captured["app"], **captured["kw"])
    config.load()
    return config.loaded_app


def _failed_logins(app, peer: str, forwarded: list[str | None]) -> list[int]:  # type: ignore[no-untyped-def]
    """Status of one wrong-password login per X-Forwarded-For value, each for a new name
    (so only the per-address throttle can stop them), sent from the address `peer`."""
    from fastapi.testclient import TestClient

    client = TestClient(app, follow_redirects=False, client=(peer, 40000))
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    codes = []
    for i, value in enumerate(forwarded):
        headers = {"X-Forwarded-For": value} if value else {}
        data = {"username": f"guess{i}", "password": "wrong", "csrf_token": token}
        codes.append(client.post("/login", data=data, headers=headers).status_code)
    return codes


def test_forwarded_for_does_not_bypass_the_login_throttle(
    monkeypatch, ingest_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Issue 17 defect 8: rotating X-Forwarded-For gave every attempt a new address."""
    base = ("--images", str(ingest_dir), "--db", str(tmp_path / "fala.db"))
    rotating = [f"203.0.113.{i}" for i in range(8)]
    # by default no proxy is trusted, not even one on this host
    for peer in ("127.0.0.1", "198.51.100.7"):
        codes = _failed_logins(_served_app(monkeypatch, *base), peer, list(rotating))
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, (peer, codes)
    # through a declared proxy the forwarded address is the client's
    app = _served_app(monkeypatch, *base, "--trusted-proxy", "127.0.0.1")
    assert set(_failed_logins(app, "127.0.0.1", list(rotating))) == {401}
    codes = _failed_logins(app, "127.0.0.1", ["203.0.113.99"] * 8)
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    # and only through it: another peer's header is still ignored
    codes = _failed_logins(app, "198.51.100.8", [f"192.0.2.{i}" for i in range(8)])
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}


def test_trusted_proxy_must_be_an_address(monkeypatch, capsys, ingest_dir: Path, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = ("--images", str(ingest_dir), "--db", str(tmp_path / "fala.db"))
    err = _serve_error(monkeypatch, capsys, *base, "--trusted-proxy", "proxy.example")
    assert "trusted proxy" in err


CHROMIUM = "/usr/bin/chromium"


ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# the grades typed per level; herniation type (2nd) is skipped by the form unless disc state 3
PLAN = {
    "L1-L2": {"disc_state": 0, "herniation": 0, "scs": 0, "rfs": 0, "lfs": 0},
    "L2-L3": {"disc_state": 1, "herniation": 0, "scs": 1, "rfs": 0, "lfs": 0},
    "L3-L4": {"disc_state": 2, "herniation": 0, "scs": 2, "rfs": 1, "lfs": 0},
    "L4-L5": {"disc_state": 3, "herniation": 1, "scs": 2, "rfs": 1, "lfs": 1},
    "L5-S1": {"disc_state": 3, "herniation": 3, "scs": 3, "rfs": 2, "lfs": 3},
}


def _keys(grades: dict[str, int]) -> list[str]:
    fields = ["disc_state", "herniation", "scs", "rfs", "lfs"]
    if grades["disc_state"] != 3:
        fields.remove("herniation")
    return [str(grades[f]) for f in fields]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package chromium; make test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def server(tmp_path: Path, ingest_dir: Path) -> Iterator[tuple[str, object]]:
    """The app (with fake model suggestions) under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    store = make_store(f"sqlite:///{tmp_path / 'fala.db'}")
    app = create_app(store, load_catalog(ingest_dir), suggestions=FakeSuggestions())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store
    srv.should_exit = True
    thread.join(timeout=10)
    store.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("LUMBAR_TEST_ARTIFACTS")
    folder = (Path(root) if root else tmp_path_factory.getbasetemp() / "artifacts") / "labeler"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


def _login(context, base: str, name: str):  # type: ignore[no-untyped-def]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(base + "/")
    assert "/login" in page.url
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/")
    return page, errors


def _shown(page, level: str) -> dict[str, int | None]:  # type: ignore[no-untyped-def]
    values: dict[str, int | None] = {}
    for field in PLAN[level]:
        on = page.locator(f'.level[data-level="{level}"] .field[data-field="{field}"] .grade.on')
        values[field] = int(on.get_attribute("data-value")) if on.count() else None
    return values


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


def test_serve_with_a_bad_model_fails_at_startup(  # type: ignore[no-untyped-def]
    monkeypatch, capsys, ingest_dir: Path, tmp_path: Path
) -> None:
    from helpers.tiny_run import make_tiny_run

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


@pytest.mark.slow  # a real browser
def test_grade_a_patient_by_keyboard_reload_second_rater_export(
    browser, server, artifacts: Path
) -> None:  # type: ignore[no-untyped-def]
    base, _store = server
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    page, errors = _login(context, base, "rad1")
    page.screenshot(path=str(artifacts / "worklist.png"))
    page.keyboard.press("Tab")  # nothing but the keyboard from here: open the next patient
    page.goto(base + "/next")
    page.wait_for_selector(".level.active")
    assert PATIENTS[0] in page.url
    page.wait_for_function("document.querySelector('#pane-main .pane-label').textContent !== ''")
    badge = page.locator('.level[data-level="L4-L5"] .suggestion')
    badge.wait_for(state="visible")  # the model's suggestion: marked, with a "not a grade" tooltip
    text = badge.inner_text()
    assert "ai suggestion" in text.lower() and "Model: abnormal 87%" in text, text
    assert "not a grade" in badge.get_attribute("title")
    badge.click()  # clicking it grades nothing
    assert page.locator(".grade.on").count() == 0
    for level, grades in PLAN.items():
        for key in _keys(grades):
            page.keyboard.press(key)
        if level != "L5-S1":
            assert page.locator(".level.active").get_attribute("data-level") != level
    page.wait_for_selector("#save-state.saved", timeout=10_000)
    page.keyboard.press("ArrowUp")  # the axial pane follows the level being graded
    page.wait_for_function(
        "document.querySelector('#pane-main .pane-label').textContent === 'Axial T2 L4-L5'"
    )
    # zoom (wheel), pan (drag) and window/level (shift-drag) on the main pane
    box = page.locator("#pane-main canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -300)
    page.keyboard.down("Shift")
    page.mouse.down()
    page.mouse.move(cx + 60, cy - 40)
    page.mouse.up()
    page.keyboard.up("Shift")
    label = page.locator("#pane-main .wl").inner_text()
    assert "×1.0" not in label and "W 255 " not in label, label
    page.keyboard.press("r")
    assert page.locator("#pane-main .wl").inner_text().startswith("W 255 L 128")
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.screenshot(path=str(artifacts / "patient-help.png"))
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()
    page.screenshot(path=str(artifacts / "patient.png"))
    page.reload()
    page.wait_for_selector(".level")
    for level, grades in PLAN.items():
        assert _shown(page, level) == grades, level
    assert page.locator(".level.complete").count() == 5
    assert not errors, errors

    other = browser.new_context(viewport={"width": 1600, "height": 900})
    page2, _ = _login(other, base, "rad2")
    page2.goto(f"{base}/patients/{PATIENTS[0]}")
    page2.wait_for_selector(".level")
    assert page2.locator(".grade.on").count() == 0  # a second rater sees an empty form

    admin = browser.new_context()
    page3, _ = _login(admin, base, "admin")
    manifest = page3.request.get(base + "/admin/export?format=manifest").text()
    for level, g in PLAN.items():
        row = f"{PATIENTS[0]},{level},axial_t2," + ",".join(str(g[f]) for f in g)
        assert row in manifest
    for ctx in (context, other, admin):
        ctx.close()
    if os.environ.get("LUMBAR_TEST_ARTIFACTS") is None:
        print("(set LUMBAR_TEST_ARTIFACTS to keep the screenshots)")
    assert (artifacts / "patient.png").stat().st_size > 10_000
    shutil.copy(artifacts / "patient.png", artifacts / "patient-latest.png")


@pytest.mark.slow  # a real browser
def test_stale_tab_shows_conflict(browser, server) -> None:  # type: ignore[no-untyped-def]
    base, _store = server
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    first, _ = _login(context, base, "rad1")
    second = context.new_page()
    for page in (first, second):
        page.goto(f"{base}/patients/{PATIENTS[1]}")
        page.wait_for_selector(".level.active")
    first.keyboard.press("2")
    first.wait_for_selector("#save-state.saved")
    second.keyboard.press("1")  # based on the version loaded before the first tab saved
    second.wait_for_selector("#conflict:not([hidden])")
    assert "another tab" in second.locator("#conflict").inner_text()
    assert _shown(second, "L1-L2")["disc_state"] == 2  # it now shows what is stored
    context.close()
