import stat
from pathlib import Path

import pytest

from lumbar.errors import UserError
from lumbar.pseudonym import SECRET_ENV, SECRET_FILE, load_secret, pseudonymize


def test_pseudonym_is_keyed_stable_and_hides_the_id():
    a = pseudonymize("FH2020001", b"secret-1")
    assert a == pseudonymize(" FH2020001 ", b"secret-1")
    assert a != pseudonymize("FH2020001", b"secret-2")
    assert "2020001" not in a and a.startswith("P") and len(a) == 13


def test_secret_created_once_private_and_reused(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(UserError, match="no pseudonym secret"):
        load_secret(tmp_path)
    first = load_secret(tmp_path, create=True)
    assert load_secret(tmp_path) == first == load_secret(tmp_path, create=True)
    secret_file = next(tmp_path.iterdir())
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [secret_file.name]


def test_empty_secret_file_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    (tmp_path / ".lumbar-secret").write_text("")
    with pytest.raises(UserError, match="is empty"):
        load_secret(tmp_path)


def test_environment_secret_wins(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "from-env")
    assert load_secret(tmp_path) == b"from-env"


def test_secret_is_private_even_over_a_stale_temporary_file(tmp_path: Path, monkeypatch):
    """A killed run may leave `.lumbar-secret.<pid>.part` behind with another mode; a later
    run with the same process id must not inherit that mode."""
    import os

    monkeypatch.delenv(SECRET_ENV, raising=False)
    stale = tmp_path / f"{SECRET_FILE}.{os.getpid()}.part"
    stale.write_text("old\n")
    stale.chmod(0o644)
    load_secret(tmp_path, create=True)
    assert ((tmp_path / SECRET_FILE).stat().st_mode & 0o777) == 0o600
    assert not stale.exists()
