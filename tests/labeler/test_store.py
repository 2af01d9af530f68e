"""The gradings store on a real database: SQLite always, PostgreSQL when a URL is given."""

from __future__ import annotations

import threading

import pytest

from lumbar.errors import UserError
from lumbar.labeler.store import (
    CONSENSUS,
    StaleGradingError,
    Store,
    rater_slot,
    read_gradings,
)

from .conftest import PASSWORDS, fast_hasher, make_store

FULL = {"disc_state": 3, "herniation": 2, "scs": 1, "rfs": 0, "lfs": 2}


@pytest.fixture
def any_store(db_url: str):  # type: ignore[no-untyped-def]
    store = make_store(db_url)
    yield store
    store.close()


def test_accounts_and_password_hashing(any_store) -> None:  # type: ignore[no-untyped-def]
    user = any_store.user_by_name("rad1")
    assert user.password_hash.startswith("$argon2")
    assert PASSWORDS["rad1"] not in user.password_hash
    assert any_store.authenticate("rad1", PASSWORDS["rad1"]).name == "rad1"
    assert any_store.authenticate("rad1", "wrong") is None
    assert any_store.authenticate("nobody", "whatever") is None
    with pytest.raises(UserError, match="exists"):
        any_store.add_user("rad1", "radiologist", "another-pass")
    with pytest.raises(UserError, match="role"):
        any_store.add_user("x1", "superuser", "another-pass")
    with pytest.raises(UserError, match="at least"):
        any_store.add_user("x2", "radiologist", "short")


def test_sessions(any_store) -> None:  # type: ignore[no-untyped-def]
    user = any_store.user_by_name("rad1")
    token, csrf = any_store.create_session(user.id)
    found, found_csrf = any_store.session_user(token)
    assert found.id == user.id and found_csrf == csrf
    any_store.end_session(token)
    assert any_store.session_user(token) is None


def test_save_versions_and_audit(any_store) -> None:  # type: ignore[no-untyped-def]
    rad1 = any_store.user_by_name("rad1")
    slot = rater_slot(rad1.id)
    first = any_store.save_grading(
        "P1", "L4-L5", slot, {"disc_state": 3}, base_version=0, by=rad1.id
    )
    assert first.version == 1 and first.grades["disc_state"] == 3
    second = any_store.save_grading("P1", "45", slot, FULL, base_version=1, by=rad1.id)
    assert second.version == 2 and second.complete
    with pytest.raises(StaleGradingError):
        any_store.save_grading("P1", "L4-L5", slot, {"scs": 3}, base_version=1, by=rad1.id)
    entries = [a for a, _ in any_store.audit(patient_id="P1")]
    changes = {(a.field, a.old, a.new) for a in entries}
    assert ("disc_state", None, "3") in changes
    assert ("scs", None, "1") in changes
    assert all(a.user_id == rad1.id and a.level == "L4-L5" for a in entries)
    # the refused save left no trace in the values
    assert any_store.gradings(slot=slot)[0].grades == FULL


def test_disc_state_change_clears_herniation_type_with_audit(any_store) -> None:  # type: ignore[no-untyped-def]
    rad1 = any_store.user_by_name("rad1")
    slot = rater_slot(rad1.id)
    any_store.save_grading("P1", "L5-S1", slot, FULL, base_version=0, by=rad1.id)
    saved = any_store.save_grading(
        "P1", "L5-S1", slot, {"disc_state": 2}, base_version=1, by=rad1.id
    )
    assert saved.grades["herniation"] == 0
    audit = [(a.field, a.old, a.new) for a, _ in any_store.audit(patient_id="P1")]
    assert ("herniation", "2", "0") in audit
    with pytest.raises(ValueError, match="herniated"):
        any_store.save_grading("P1", "L5-S1", slot, {"herniation": 1}, base_version=2, by=rad1.id)


def test_raters_are_kept_apart(any_store) -> None:  # type: ignore[no-untyped-def]
    rad1, rad2 = any_store.user_by_name("rad1"), any_store.user_by_name("rad2")
    any_store.save_grading("P1", "L1-L2", rater_slot(rad1.id), FULL, base_version=0, by=rad1.id)
    assert any_store.gradings(slot=rater_slot(rad2.id)) == []
    # rad2's first save is version 0 of its own row, not a conflict with rad1's
    any_store.save_grading(
        "P1", "L1-L2", rater_slot(rad2.id), {"scs": 0}, base_version=0, by=rad2.id
    )
    assert len(any_store.gradings(patient_id="P1")) == 2


def test_concurrent_saves_lose_no_update(any_store) -> None:  # type: ignore[no-untyped-def]
    """Eight threads race to save on the same version: exactly one wins, the rest are stale."""
    rad1 = any_store.user_by_name("rad1")
    slot = rater_slot(rad1.id)
    any_store.save_grading("P1", "L3-L4", slot, {"scs": 0}, base_version=0, by=rad1.id)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def worker(value: int) -> None:
        barrier.wait()
        try:
            any_store.save_grading(
                "P1", "L3-L4", slot, {"scs": value % 3 + 1}, base_version=1, by=rad1.id
            )
            outcomes.append("ok")
        except StaleGradingError:
            outcomes.append("stale")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["stale"] * 7
    row = any_store.gradings(slot=slot)[0]
    assert row.version == 2
    last = next(a for a, _ in any_store.audit(patient_id="P1") if a.field == "scs")
    assert last.new == str(row.grades["scs"])  # the audit trail agrees with the stored value


def test_read_gradings_hook(db_url: str) -> None:
    store = make_store(db_url)
    rad1, rad2 = store.user_by_name("rad1"), store.user_by_name("rad2")
    admin = store.user_by_name("admin")
    store.save_grading("P1", "L1-L2", rater_slot(rad1.id), FULL, base_version=0, by=rad1.id)
    store.save_grading("P1", "L2-L3", rater_slot(rad1.id), {"scs": 1}, base_version=0, by=rad1.id)
    store.save_grading("P1", "L2-L3", rater_slot(rad2.id), {"scs": 2}, base_version=0, by=rad2.id)
    store.close()
    rows = list(read_gradings(db_url))
    # L2-L3 has two raters and no consensus: not settled, left out
    assert [(r["patient_id"], r["level"]) for r in rows] == [("P1", "L1-L2")]
    store = Store(db_url, hasher=fast_hasher())
    store.save_grading("P1", "L2-L3", CONSENSUS, {"scs": 2}, base_version=0, by=admin.id)
    store.close()
    rows = {r["level"]: r for r in read_gradings(db_url)}
    assert rows["L2-L3"]["scs"] == 2
    assert [r["scs"] for r in read_gradings(db_url, rater="rad2")] == [2]
    with pytest.raises(UserError, match="no rater"):
        list(read_gradings(db_url, rater="nobody"))


def test_migrations_are_idempotent(db_url: str) -> None:
    Store(db_url, hasher=fast_hasher()).close()
    store = Store(db_url, hasher=fast_hasher())  # second start: nothing to do, nothing lost
    assert store.users() == []
    store.close()


def test_missing_database_folder_is_a_user_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match="does not exist"):
        Store(str(tmp_path / "no" / "such" / "f.db"))


def test_readers_never_create_a_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "labels.db"
    with pytest.raises(UserError, match="not found"):
        list(read_gradings(f"sqlite:///{missing}"))
    assert not missing.exists()
    import sqlite3

    sqlite3.connect(missing).close()  # an empty SQLite file: not a labeler database
    with pytest.raises(UserError, match="no labeler gradings"):
        list(read_gradings(f"sqlite:///{missing}"))
