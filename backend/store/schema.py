"""Database schema and engine: sessions, their turns, what the mentor remembers and session insights, through
SQLAlchemy 2.0.

SQLite (WAL mode) by default; a PostgreSQL URL works unchanged, since nothing outside ``make_engine`` uses
SQLite-only SQL. Timestamps are stored as UTC and always read back timezone-aware.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool

from backend.config import resolve_path
from backend.store import migrate

SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

# Applied to every new SQLite connection. WAL + NORMAL survives a killed process without losing a commit
# (only a power loss can drop the last transactions); busy_timeout lets writers queue instead of failing.
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)
_PRAGMA_RETRY_S = 5.0
_CONNECT_TIMEOUT_S = 5  # PostgreSQL (psycopg): seconds to establish a connection


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone, so it stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), index=True)
    title: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    persona: Mapped[str | None] = mapped_column(String(40))  # None: the default persona
    user_id: Mapped[str | None] = mapped_column(String(64))  # the app's own user, for memory across sessions
    safety_locale: Mapped[str | None] = mapped_column(String(16))  # whose crisis numbers (None: safety.locale)


class TurnRow(Base):
    __tablename__ = "turns"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'assistant')", name="ck_turns_role"),
        Index("ix_turns_session_id_id", "session_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(64), ForeignKey("sessions.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    emotion: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    duration_s: Mapped[float | None] = mapped_column(Float)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The crisis protocol's record (docs/SAFETY.md): on a user turn {flagged, category, level, mode} (mode: the
    # session is in safety mode after it); on a reply {written: true} when the team's words were said.
    safety: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class MemoryRow(Base):
    """A salient fact a user said (an event, a person, a worry, a goal), kept for later sessions of that user.

    ``scope`` is the user (API key fingerprint and/or the app's user id, see store/memories.py); ``embedding``
    is the sentence embedding as little-endian float32 bytes (the same on SQLite and PostgreSQL). Deleting the
    session it was learned in deletes it (ON DELETE CASCADE)."""

    __tablename__ = "memories"
    __table_args__ = (
        Index("ix_memories_scope_id", "scope", "id"),
        Index("ix_memories_session_id", "session_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(200))
    session_id: Mapped[str] = mapped_column(String(64), ForeignKey("sessions.id", ondelete="CASCADE"))
    turn_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InsightRow(Base):
    """A session's running analysis: the summary and its points, the topics, and the last turn folded in."""

    __tablename__ = "session_insights"

    session_id: Mapped[str] = mapped_column(String(64), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    summary: Mapped[str] = mapped_column(Text)
    points: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    topics: Mapped[dict[str, int]] = mapped_column(JSON)
    through_turn_id: Mapped[int] = mapped_column(Integer)
    updates: Mapped[int] = mapped_column(Integer)  # how many incremental updates made this summary
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def _execute_pragma(cursor: Any, pragma: str) -> None:
    """Run ``pragma``, retrying "database is locked" for up to 5 s: SQLite can refuse the switch to WAL
    without calling the busy handler when two processes open a new file at the same moment."""
    deadline = time.monotonic() + _PRAGMA_RETRY_S
    delay = 0.005
    while True:
        try:
            cursor.execute(pragma)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _set_sqlite_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            _execute_pragma(cursor, pragma)
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite: the parent folder is created, relative paths are resolved against the
    repository root, and every connection gets WAL, synchronous=NORMAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        # A database that cannot be reached fails a call (and readiness) within seconds instead of hanging it.
        return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": _CONNECT_TIMEOUT_S})
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)

    database = parsed.database
    if not database or database == ":memory:":
        # One shared in-memory database for every thread (tests and throwaway runs only).
        engine = create_engine(parsed, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    else:
        path = resolve_path(database)
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed.set(database=str(path)), connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def init_db(engine: Engine) -> None:
    """Migrate the database to the current schema (Alembic, under a database lock; idempotent)."""
    migrate.upgrade(engine)
