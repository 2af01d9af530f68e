"""Fixtures of the labeler tests: a small ingest folder (`helpers.ingest_folder`), a real SQLite
store, logged-in clients."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.ingest_folder import PATIENTS, ingest_dir

from lumbar.grading import LEVELS

__all__ = ["PATIENTS", "ingest_dir"]

PASSWORDS = {"admin": "admin-pass-1", "rad1": "rad1-pass-1", "rad2": "rad2-pass-1"}
POSTGRES_ENV = "LUMBAR_TEST_POSTGRES_URL"


def pytest_configure(config: pytest.Config) -> None:
    """Starlette suggests httpx2 for its test client; httpx works and is what is pinned."""
    config.addinivalue_line("filterwarnings", "ignore:.*httpx2.*")


def fast_hasher():  # type: ignore[no-untyped-def]
    """A deliberately cheap argon2 hasher: same code path, milliseconds instead of ~50 ms."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)


def _initdb() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1] if found else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """$LUMBAR_TEST_POSTGRES_URL, else a throwaway local cluster from Debian's postgresql."""
    url = os.environ.get(POSTGRES_ENV)
    if url:
        yield url
        return
    initdb = _initdb()
    if initdb is None:
        pytest.skip(
            f"PostgreSQL store tests: set {POSTGRES_ENV}=postgresql://... or install Debian's "
            "postgresql (make test does, as root)"
        )
    bindir = initdb.parent
    # not under pytest's temporary folder: that one is private to the user running the tests
    folder = Path(tempfile.mkdtemp(prefix="lumbar-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as Debian's postgres user
        if shutil.which("runuser") is None:
            pytest.skip("PostgreSQL store tests: running as root without runuser")
        shutil.chown(folder, "postgres")
        folder.chmod(0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    run = subprocess.run
    init = run([*as_user, str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres"],
               capture_output=True, text=True)  # fmt: skip
    if init.returncode != 0:
        pytest.skip(f"PostgreSQL store tests: initdb failed: {init.stderr.strip()[:200]}")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
         str(folder / "log"), "-w", "start"],
        capture_output=True, text=True,
    )  # fmt: skip
    if start.returncode != 0:
        pytest.skip(f"PostgreSQL store tests: server did not start: {start.stderr.strip()[:200]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    from lumbar.labeler.store import normalise_url

    engine = create_engine(normalise_url(url))
    with engine.begin() as conn:
        for table in ("audit", "gradings", "sessions", "users", "alembic_version"):
            conn.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file, and an emptied PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fala.db'}"
    url = request.getfixturevalue("postgres_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path / 'fala.db'}"


def make_store(url: str):  # type: ignore[no-untyped-def]
    """A migrated store with users admin, rad1 and rad2."""
    from lumbar.labeler.store import Store

    store = Store(url, hasher=fast_hasher())
    store.add_user("admin", "admin", PASSWORDS["admin"])
    store.add_user("rad1", "radiologist", PASSWORDS["rad1"])
    store.add_user("rad2", "radiologist", PASSWORDS["rad2"])
    return store


@pytest.fixture
def store(sqlite_url: str) -> Iterator[object]:
    """A SQLite store with three users."""
    s = make_store(sqlite_url)
    yield s
    s.close()


class FakeSuggestions:
    """A model-free stand-in for `lumbar.labeler.suggestions.Suggestions`: abnormal 87% at
    every level."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def for_patient(self, patient_id: str) -> dict[str, dict[str, object]]:
        """The same suggestion for each level of a known patient ({} otherwise)."""
        self.calls.append(patient_id)
        if patient_id not in PATIENTS:
            return {}
        return {
            lv.value: {
                "source": "model",
                "model": "fake-run",
                "target": "disc_abnormal",
                "suggested": "abnormal",
                "probability": 0.87,
                "probabilities": {"normal": 0.13, "abnormal": 0.87},
            }
            for lv in LEVELS
        }


@pytest.fixture
def app(store, ingest_dir: Path):  # type: ignore[no-untyped-def]
    """The FastAPI app over the store and the ingest folder."""
    from lumbar.labeler.app import create_app
    from lumbar.labeler.catalog import load_catalog

    return create_app(store, load_catalog(ingest_dir))


def new_client(app):  # type: ignore[no-untyped-def]
    """A test client that does not follow redirects."""
    from fastapi.testclient import TestClient

    return TestClient(app, follow_redirects=False)


def login(client, name: str, password: str | None = None):  # type: ignore[no-untyped-def]
    """Log in through the form (with its CSRF cookie); returns the session's CSRF token."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/login",
        data={
            "username": name,
            "password": password or PASSWORDS[name],
            "csrf_token": token,
            "next": "/",
        },
    )
    assert response.status_code == 303, response.text
    patient = client.get(f"/patients/{PATIENTS[0]}")
    return re.search(r'"csrf": "([^"]+)"', patient.text).group(1)


@pytest.fixture
def rad1(app):  # type: ignore[no-untyped-def]
    """(client, csrf) logged in as rad1."""
    client = new_client(app)
    return client, login(client, "rad1")


@pytest.fixture
def admin(app):  # type: ignore[no-untyped-def]
    """(client, csrf) logged in as admin."""
    client = new_client(app)
    return client, login(client, "admin")


def save(
    client,
    csrf: str,
    level: str,
    changes: dict,
    version: int = 0,  # type: ignore[no-untyped-def]
    patient: str = PATIENTS[0],
    slot: str | None = None,
):
    """PUT one grading change."""
    query = f"?slot={slot}" if slot else ""
    return client.put(
        f"/api/patients/{patient}/gradings/{level}{query}",
        json={"version": version, "changes": changes},
        headers={"X-CSRF-Token": csrf},
    )
