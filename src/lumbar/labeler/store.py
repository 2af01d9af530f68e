"""The labeler's database: raters, sessions, gradings (Table 3) and their audit trail.

One `Store` wraps a SQLAlchemy engine on SQLite (a file, the default) or PostgreSQL (a URL).
The schema is created and upgraded by the Alembic migrations shipped in
`lumbar/labeler/migrations`, run by `Store(url)` itself, so `serve` and `add-user` always find
the current schema.

Gradings are kept apart per *slot*: one slot per rater (`rater:<user id>`) plus the admins'
adjudicated `consensus`. Every row carries a `version`; a save names the version it was based on
and is refused (`StaleGradingError`) when the row moved on since, so two tabs or two raters never
overwrite each other silently. Every change writes one audit row per changed field.

`read_gradings(url)` is the hook `lumbar dataset build --labels DB_URL` uses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from lumbar.errors import UserError
from lumbar.grading import GRADES, LEVELS, DiscLevel, DiscState, GradeField, Herniation

ROLES = ("radiologist", "admin")
CONSENSUS = "consensus"
FIELDS: tuple[str, ...] = tuple(f.value for f in GradeField)
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SESSION_HOURS = 12
MIN_PASSWORD = 8


def utcnow() -> dt.datetime:
    """Timezone-aware now; stored as UTC."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of the labeler's tables."""


class User(Base):
    """A rater or admin account; the password is stored as an argon2 hash only."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(256), nullable=False)
    active: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    @property
    def is_admin(self) -> bool:
        """Admins manage users, export and adjudicate the consensus."""
        return self.role == "admin"


class LoginSession(Base):
    """A server-side login session; the cookie holds a random token, the table its SHA-256."""

    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Grading(Base):
    """One slot's Table 3 grades of one disc level of one patient (any grade may be unset)."""

    __tablename__ = "gradings"
    __table_args__ = (UniqueConstraint("patient_id", "level", "slot", name="uq_grading_slot"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    level: Mapped[str] = mapped_column(String(8), nullable=False)
    slot: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    rater_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    disc_state: Mapped[int | None] = mapped_column(Integer, nullable=True)
    herniation: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rfs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lfs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_by: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)

    def grades(self) -> dict[str, int | None]:
        """The five grades keyed by field name."""
        return {f: getattr(self, f) for f in FIELDS}

    @property
    def complete(self) -> bool:
        """All five grades given."""
        return all(getattr(self, f) is not None for f in FIELDS)


class AuditEntry(Base):
    """One changed value: who changed which field of what, when, from what to what."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    patient_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    level: Mapped[str | None] = mapped_column(String(8), nullable=True)
    slot: Mapped[str | None] = mapped_column(String(32), nullable=True)
    field: Mapped[str | None] = mapped_column(String(32), nullable=True)
    old: Mapped[str | None] = mapped_column(Text, nullable=True)
    new: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)


class StaleGradingError(Exception):
    """A save based on an older version than the stored one (another tab or rater saved first)."""

    def __init__(self, current: Grading | None) -> None:
        super().__init__("this grading was changed elsewhere since you loaded it")
        self.current = current


@dataclass(frozen=True)
class GradingRecord:
    """A plain, session-independent copy of a grading row."""

    patient_id: str
    level: str
    slot: str
    rater: str | None
    grades: dict[str, int | None]
    version: int
    updated_at: dt.datetime

    @property
    def complete(self) -> bool:
        """All five grades given."""
        return all(v is not None for v in self.grades.values())


def rater_slot(user_id: int) -> str:
    """The slot name of one rater's own gradings."""
    return f"rater:{user_id}"


def default_sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path.resolve()}"


def normalise_url(url: str) -> str:
    """Accept a bare file path as SQLite; `postgresql://` means psycopg 3."""
    if "://" not in url:
        return default_sqlite_url(Path(url))
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def hash_token(token: str) -> str:
    """SHA-256 hex of a session token (the table never holds usable tokens)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # The driver's own transaction handling is switched off so that every transaction
            # starts with BEGIN IMMEDIATE (below): a read-then-write never meets a lock upgrade
            # failure under concurrent raters; WAL lets readers go on while one writes.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except ImportError as err:  # e.g. psycopg missing
        raise UserError(
            f"cannot use database URL scheme {url.split('://', 1)[0]}: {err}; "
            "install lumbar[postgres] for PostgreSQL"
        ) from err


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision shipped with lumbar."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Store:
    """The labeler's database.

    Args:
        url: a SQLAlchemy URL (`sqlite:///grades.db`, `postgresql://user@host/db`) or a path,
            taken as a SQLite file.
        create: run migrations (creating the schema when absent); when False, the database
            must exist already with the labeler's tables (readers never create one).
        hasher: an `argon2.PasswordHasher`; argon2-cffi's defaults (RFC 9106 low-memory) when
            None. Tests pass a cheap one.

    Example:
        >>> store = Store("sqlite:///:memory:")  # doctest: +SKIP
    """

    def __init__(self, url: str, *, create: bool = True, hasher: Any = None) -> None:
        self.url = normalise_url(url)
        if self.url.startswith("sqlite:///") and ":memory:" not in self.url:
            folder = Path(self.url.removeprefix("sqlite:///")).parent
            if not folder.is_dir():
                raise UserError(f"database folder {folder} does not exist")
        sqlite_file = self.url.startswith("sqlite:///") and ":memory:" not in self.url
        path = Path(self.url.removeprefix("sqlite:///")) if sqlite_file else None
        if path is not None and not create and not path.is_file():
            raise UserError(f"labeler database {path} not found")
        self.engine = _make_engine(self.url)
        if create:
            migrate(self.engine)
        elif not inspect(self.engine).has_table("gradings"):
            self.engine.dispose()
            raise UserError(
                "the database holds no labeler gradings (run `lumbar label serve` first)"
            )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        from argon2 import PasswordHasher

        self._hasher = hasher or PasswordHasher()
        # hashing a fixed password lets failed logins for unknown names take as long as others
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def session(self) -> Session:
        """A new ORM session (use as a context manager)."""
        return self._sessions()

    # ----------------------------------------------------------------- users
    def add_user(self, name: str, role: str, password: str, *, by: int | None = None) -> User:
        """Create an account.

        Raises:
            UserError: a bad name or role, a short password, or a name already taken.
        """
        if not USER_NAME.match(name):
            raise UserError(
                "user name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit"
            )
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password must have at least {MIN_PASSWORD} characters")
        user = User(
            name=name,
            role=role,
            password_hash=self._hasher.hash(password),
            active=1,
            created_at=utcnow(),
        )
        with self.session() as s, s.begin():
            if s.scalar(select(User).where(User.name == name)) is not None:
                raise UserError(f"user {name!r} exists already")
            s.add(user)
            s.flush()
            s.add(_audit(by, "user.create", field="user", new=f"{name} ({role})"))
        return user

    def update_user(
        self,
        user_id: int,
        *,
        by: int | None,
        role: str | None = None,
        active: bool | None = None,
        password: str | None = None,
    ) -> User:
        """Change an account's role, active flag or password (audited; sessions end on change)."""
        with self.session() as s, s.begin():
            user = s.get(User, user_id)
            if user is None:
                raise UserError("no such user")
            if role is not None and role != user.role:
                if role not in ROLES:
                    raise UserError(f"role must be one of {', '.join(ROLES)}")
                s.add(_audit(by, "user.role", field=user.name, old=user.role, new=role))
                user.role = role
            if active is not None and int(active) != user.active:
                s.add(_audit(by, "user.active", field=user.name, old=str(user.active)))
                user.active = int(active)
            if password is not None:
                if len(password) < MIN_PASSWORD:
                    raise UserError(f"password must have at least {MIN_PASSWORD} characters")
                user.password_hash = self._hasher.hash(password)
                s.add(_audit(by, "user.password", field=user.name))
            if role is not None or active is not None or password is not None:
                s.query(LoginSession).filter(LoginSession.user_id == user_id).delete()
        return user

    def users(self) -> list[User]:
        """All accounts, by name."""
        with self.session() as s:
            return list(s.scalars(select(User).order_by(User.name)))

    def user(self, user_id: int) -> User | None:
        """One account by id."""
        with self.session() as s:
            return s.get(User, user_id)

    def user_by_name(self, name: str) -> User | None:
        """One account by name."""
        with self.session() as s:
            return s.scalar(select(User).where(User.name == name))

    def authenticate(self, name: str, password: str) -> User | None:
        """The active user whose password matches, else None (same work either way)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        user = self.user_by_name(name) if USER_NAME.match(name) else None
        try:
            self._hasher.verify(user.password_hash if user else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or not user.active:
            return None
        if self._hasher.check_needs_rehash(user.password_hash):
            with self.session() as s, s.begin():
                row = s.get(User, user.id)
                if row is not None:
                    row.password_hash = self._hasher.hash(password)
        return user

    # -------------------------------------------------------------- sessions
    def create_session(self, user_id: int) -> tuple[str, str]:
        """Start a login session; returns (cookie token, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        with self.session() as s, s.begin():
            s.query(LoginSession).filter(LoginSession.expires_at < now).delete()
            s.add(
                LoginSession(
                    token_hash=hash_token(token),
                    user_id=user_id,
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=now + dt.timedelta(hours=SESSION_HOURS),
                )
            )
            s.add(_audit(user_id, "login"))
        return token, csrf

    def session_user(self, token: str) -> tuple[User, str] | None:
        """The active user and CSRF token of a live session, else None."""
        sessions, users = LoginSession.__table__, User.__table__
        with self.engine.connect() as conn:
            row = conn.execute(
                select(sessions.c.csrf_token, sessions.c.expires_at, users)
                .join(users, users.c.id == sessions.c.user_id)
                .where(sessions.c.token_hash == hash_token(token))
            ).first()
        if row is None or _aware(row.expires_at) < utcnow() or not row.active:
            return None
        user = User(
            id=row.id,
            name=row.name,
            role=row.role,
            password_hash="",  # not needed past authentication; never handed to pages
            active=row.active,
            created_at=row.created_at,
        )
        return user, row.csrf_token

    def end_session(self, token: str) -> None:
        """Log out: forget the session."""
        with self.session() as s, s.begin():
            row = s.get(LoginSession, hash_token(token))
            if row is not None:
                s.delete(row)
                s.add(_audit(row.user_id, "logout"))

    # -------------------------------------------------------------- gradings
    def gradings(
        self, *, patient_id: str | None = None, slot: str | None = None
    ) -> list[GradingRecord]:
        """Grading rows, optionally of one patient and/or one slot."""
        with self.session() as s:
            query = select(Grading, User.name).outerjoin(User, User.id == Grading.rater_id)
            if patient_id is not None:
                query = query.where(Grading.patient_id == patient_id)
            if slot is not None:
                query = query.where(Grading.slot == slot)
            query = query.order_by(Grading.patient_id, Grading.level, Grading.slot)
            return [_record(g, name) for g, name in s.execute(query)]

    def save_grading(
        self,
        patient_id: str,
        level: str,
        slot: str,
        changes: Mapping[str, int | None],
        *,
        base_version: int,
        by: int,
        action: str = "grade",
    ) -> GradingRecord:
        """Apply `changes` to one slot's grading of one level, if it is still at `base_version`.

        A disc state other than herniation clears the herniation type (Table 3: it applies
        only to herniated discs); the clearing is audited like any other change.

        Raises:
            ValueError: unknown field or level, a grade outside 0-3, or a herniation type on a
                disc that is not herniated.
            StaleGradingError: the stored version is not `base_version`.
        """
        level = DiscLevel.parse(level).value
        _check_patient(patient_id)
        clean = _check_changes(changes)
        now = utcnow()
        table, audit = Grading.__table__, AuditEntry.__table__
        # SQLAlchemy Core, not the ORM: this is the hot path of every key press (~3x cheaper)
        with self.engine.begin() as conn:
            row = (
                conn.execute(
                    select(table)
                    .where(
                        table.c.patient_id == patient_id,
                        table.c.level == level,
                        table.c.slot == slot,
                    )
                    .with_for_update()
                )
                .mappings()
                .first()
            )
            current = row["version"] if row is not None else 0
            if current != base_version:
                raise StaleGradingError(None)
            old = {f: row[f] for f in FIELDS} if row is not None else dict.fromkeys(FIELDS)
            new = {**old, **clean}
            _reconcile_herniation(new, clean)
            diff = {f: (old[f], new[f]) for f in FIELDS if old[f] != new[f]}
            version = current
            if row is None:
                version = 1
                try:
                    with conn.begin_nested():
                        conn.execute(
                            table.insert().values(
                                patient_id=patient_id,
                                level=level,
                                slot=slot,
                                rater_id=_slot_rater(slot),
                                version=1,
                                updated_at=now,
                                updated_by=by,
                                **new,
                            )
                        )
                except IntegrityError as err:  # created concurrently by another request
                    raise StaleGradingError(None) from err
            elif diff:
                version = base_version + 1
                result = conn.execute(
                    update(table)
                    .where(table.c.id == row["id"], table.c.version == base_version)
                    .values(**new, version=version, updated_at=now, updated_by=by)
                )
                if result.rowcount != 1:
                    raise StaleGradingError(None)
            if diff:
                conn.execute(
                    audit.insert(),
                    [
                        {
                            "at": now,
                            "user_id": by,
                            "action": action,
                            "patient_id": patient_id,
                            "level": level,
                            "slot": slot,
                            "field": f,
                            "old": None if before is None else str(before),
                            "new": None if after is None else str(after),
                            "version": version,
                        }
                        for f, (before, after) in diff.items()
                    ],
                )
        rater_id = _slot_rater(slot)
        return GradingRecord(
            patient_id=patient_id,
            level=level,
            slot=slot,
            rater=CONSENSUS if slot == CONSENSUS else self._user_name(rater_id),
            grades=new,
            version=version,
            updated_at=now if diff or row is None else _aware(row["updated_at"]),
        )

    def _user_name(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        with self.engine.connect() as conn:
            return conn.execute(
                select(User.__table__.c.name).where(User.__table__.c.id == user_id)
            ).scalar()

    def progress(self, slot: str | None) -> dict[str, int]:
        """Completely graded levels per patient, in one slot (or any slot when None)."""
        counts: dict[str, int] = {}
        for g in self.gradings(slot=slot):
            if g.complete:
                counts[g.patient_id] = counts.get(g.patient_id, 0) + 1
        return counts

    def import_gradings(
        self, rows: Iterable[Mapping[str, object]], slot: str, *, by: int, replace: bool = False
    ) -> int:
        """Write many gradings to one slot in a single transaction (all or nothing).

        Rows must already be validated. Existing gradings are refused unless `replace`, when
        they are updated with an audit row per changed value.

        Raises:
            UserError: a grading exists already in the slot and `replace` is false.
        """
        rows = list(rows)
        now = utcnow()
        count = 0
        with self.session() as s, s.begin():
            existing = {
                (g.patient_id, g.level): g
                for g in s.scalars(select(Grading).where(Grading.slot == slot))
            }
            clash = [
                f"{r['patient_id']} {r['level']}"
                for r in rows
                if (r["patient_id"], r["level"]) in existing
            ]
            if clash and not replace:
                shown = ", ".join(clash[:5]) + (" ..." if len(clash) > 5 else "")
                raise UserError(
                    f"{len(clash)} grading(s) exist already for this rater ({shown}); "
                    "replace them to overwrite them (audited)",
                    option="replace",
                )
            for r in rows:
                key = (str(r["patient_id"]), str(r["level"]))
                new = {f: r.get(f) for f in FIELDS}
                row = existing.get(key)
                old = row.grades() if row is not None else dict.fromkeys(FIELDS)
                if row is None:
                    row = Grading(
                        patient_id=key[0],
                        level=key[1],
                        slot=slot,
                        rater_id=_slot_rater(slot),
                        version=1,
                        updated_at=now,
                        updated_by=by,
                        **new,
                    )
                    s.add(row)
                else:
                    if old == new:
                        continue
                    for f in FIELDS:
                        setattr(row, f, new[f])
                    row.version += 1
                    row.updated_at, row.updated_by = now, by
                s.flush()
                for f in FIELDS:
                    if old[f] != new[f]:
                        s.add(
                            AuditEntry(
                                at=now,
                                user_id=by,
                                action="import",
                                patient_id=key[0],
                                level=key[1],
                                slot=slot,
                                field=f,
                                old=None if old[f] is None else str(old[f]),
                                new=None if new[f] is None else str(new[f]),
                                version=row.version,
                            )
                        )
                count += 1
        return count

    # ----------------------------------------------------------------- audit
    def audit(
        self, *, patient_id: str | None = None, user_id: int | None = None, limit: int = 500
    ) -> list[tuple[AuditEntry, str | None]]:
        """Newest audit entries first, with the acting user's name; only one patient's and/or
        one user's when asked (filtered before the limit, so others' changes never crowd
        out the entries asked for)."""
        with self.session() as s:
            query = select(AuditEntry, User.name).outerjoin(User, User.id == AuditEntry.user_id)
            if patient_id is not None:
                query = query.where(AuditEntry.patient_id == patient_id)
            if user_id is not None:
                query = query.where(AuditEntry.user_id == user_id)
            query = query.order_by(AuditEntry.id.desc()).limit(limit)
            return [(a, n) for a, n in s.execute(query)]

    def audit_count(self) -> int:
        """Number of audit rows (all actions)."""
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0)

    def slot_names(self) -> dict[str, str]:
        """Display name of every slot with gradings: rater name or `consensus`."""
        with self.session() as s:
            slots = s.scalars(select(Grading.slot).distinct())
            users = {rater_slot(u.id): u.name for u in s.scalars(select(User))}
            return {slot: users.get(slot, slot) for slot in slots}


def read_gradings(url: str, *, rater: str | None = None) -> Iterator[dict[str, object]]:
    """Gradings as label rows keyed by pseudonym (the hook of `lumbar dataset build`).

    Args:
        url: the labeler database URL.
        rater: a rater's name, or `consensus`. When None, each disc level gives the consensus
            grading when one exists, else the only rater's grading; levels graded by several
            raters and not adjudicated are left out (their labels are not settled).

    Yields:
        dicts with `patient_id`, `level` and the five grade columns (None when not graded).
    """
    store = Store(url, create=False)
    try:
        yield from _label_rows(store, rater)
    finally:
        store.close()


def _label_rows(store: Store, rater: str | None) -> Iterator[dict[str, object]]:
    if rater is not None:
        slot = resolve_slot(store, rater)
        for g in store.gradings(slot=slot):
            yield {"patient_id": g.patient_id, "level": g.level, **g.grades}
        return
    by_key: dict[tuple[str, str], list[GradingRecord]] = {}
    for g in store.gradings():
        by_key.setdefault((g.patient_id, g.level), []).append(g)
    for (patient, level), rows in by_key.items():
        consensus = [g for g in rows if g.slot == CONSENSUS]
        chosen = consensus[0] if consensus else (rows[0] if len(rows) == 1 else None)
        if chosen is not None:
            yield {"patient_id": patient, "level": level, **chosen.grades}


def resolve_slot(store: Store, rater: str) -> str:
    """The slot of a rater name or of `consensus`.

    Raises:
        UserError: no such rater.
    """
    if rater == CONSENSUS:
        return CONSENSUS
    user = store.user_by_name(rater)
    if user is None:
        raise UserError(f"no rater named {rater!r}")
    return rater_slot(user.id)


def _record(g: Grading, rater: str | None) -> GradingRecord:
    return GradingRecord(
        patient_id=g.patient_id,
        level=g.level,
        slot=g.slot,
        rater=rater if g.slot != CONSENSUS else CONSENSUS,
        grades=g.grades(),
        version=g.version,
        updated_at=_aware(g.updated_at),
    )


def _audit(
    user_id: int | None,
    action: str,
    *,
    field: str | None = None,
    old: str | None = None,
    new: str | None = None,
) -> AuditEntry:
    return AuditEntry(at=utcnow(), user_id=user_id, action=action, field=field, old=old, new=new)


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes for timezone-aware columns
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _slot_rater(slot: str) -> int | None:
    return int(slot.split(":", 1)[1]) if slot.startswith("rater:") else None


def _check_patient(patient_id: str) -> None:
    if not PATIENT_ID.match(patient_id):
        raise ValueError("patient id must be a pseudonym of letters, digits, '.', '_' or '-'")


def _check_changes(changes: Mapping[str, int | None]) -> dict[str, int | None]:
    clean: dict[str, int | None] = {}
    for key, value in changes.items():
        if key not in FIELDS:
            raise ValueError(f"unknown field {key!r}; expected one of {', '.join(FIELDS)}")
        if value is not None and (isinstance(value, bool) or value not in GRADES):
            raise ValueError(f"{key} grade {value!r} is outside 0-3")
        clean[key] = value
    return clean


def _reconcile_herniation(new: dict[str, int | None], explicit: Mapping[str, int | None]) -> None:
    state, herniation = new["disc_state"], new["herniation"]
    if state is None or state == DiscState.HERNIATION or herniation == Herniation.NONE:
        return
    if "herniation" in explicit and herniation is not None:
        raise ValueError(
            "herniation type applies only to herniated discs (disc state 3); set the disc "
            "state to herniation first"
        )
    new["herniation"] = int(Herniation.NONE)


def complete_levels(records: Iterable[GradingRecord]) -> int:
    """How many of the five levels are completely graded."""
    return sum(1 for g in records if g.complete and g.level in {lv.value for lv in LEVELS})
