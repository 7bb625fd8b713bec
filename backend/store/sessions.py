"""Conversation store: sessions and their turns, persisted through SQLAlchemy.

Every method blocks on the database (call it via ``asyncio.to_thread`` from the event loop). The store is
thread-safe: one engine, short sessions per call. Write paths start with a write so that SQLite takes its
write lock first and queues on ``busy_timeout`` instead of failing a read-to-write upgrade.

Ownership: ``owner`` is an API-key fingerprint, or None when auth is off. A method given an owner only sees
that owner's sessions; a session owned by someone else is reported as not found (its existence is private).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Engine, Select, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.core.exceptions import ClarityError, InvalidInputError, SessionNotFoundError
from backend.store.insights import InsightStore
from backend.store.memories import MemoryStore
from backend.store.records import HistoryTurn
from backend.store.schema import SESSION_ID_PATTERN, SessionRow, TurnRow, utcnow

logger = logging.getLogger(__name__)

Role = Literal["user", "assistant"]
_ROLES: frozenset[str] = frozenset(("user", "assistant"))
_SESSION_ID_RE = re.compile(SESSION_ID_PATTERN)
TITLE_WORDS = 6
TITLE_MAX_CHARS = 80


@dataclass(frozen=True)
class SessionRecord:
    id: str
    owner: str | None
    title: str | None
    created_at: datetime
    updated_at: datetime
    turn_count: int
    persona: str | None = None
    user_id: str | None = None
    safety_locale: str | None = None


@dataclass(frozen=True)
class TurnRecord:
    id: int
    session_id: str
    role: Role
    text: str
    emotion: dict[str, Any] | None
    timings: dict[str, Any] | None
    duration_s: float | None
    interrupted: bool
    created_at: datetime
    safety: dict[str, Any] | None = None


class SessionExistsError(ClarityError):
    """A custom session id that is already taken (POST /api/sessions with an id in use)."""

    code = "session_exists"
    http_status = 409


def new_session_id() -> str:
    return uuid.uuid4().hex


def is_valid_session_id(session_id: str) -> bool:
    return bool(_SESSION_ID_RE.fullmatch(session_id))


def title_from_text(text: str) -> str | None:
    """The first few words of a user's first message, as a session title (None if it has no words)."""
    words = text.split()[:TITLE_WORDS]
    if not words:
        return None
    title = " ".join(words)
    return title if len(title) <= TITLE_MAX_CHARS else title[: TITLE_MAX_CHARS - 1].rstrip() + "…"


def _turn_record(row: TurnRow) -> TurnRecord:
    return TurnRecord(
        id=row.id,
        session_id=row.session_id,
        role=cast(Role, row.role),
        text=row.text,
        emotion=row.emotion,
        timings=row.timings,
        duration_s=row.duration_s,
        interrupted=row.interrupted,
        created_at=row.created_at,
        safety=row.safety,
    )


def _session_record(row: SessionRow, turn_count: int) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        owner=row.owner,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
        turn_count=turn_count,
        persona=row.persona,
        user_id=row.user_id,
        safety_locale=row.safety_locale,
    )


def _turn_count_column() -> Any:
    return (
        select(func.count(TurnRow.id))
        .where(TurnRow.session_id == SessionRow.id)
        .correlate(SessionRow)
        .scalar_subquery()
    )


def _owned(stmt: Select[Any], owner: str | None) -> Select[Any]:
    return stmt if owner is None else stmt.where(SessionRow.owner == owner)


class SessionStore:
    """Sessions and turns in one database. All methods block."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.memories = MemoryStore(engine)  # what the mentor remembers of each user
        self.insights = InsightStore(engine)  # each session's running analysis

    # --- sessions -----------------------------------------------------------------------------------

    def create_session(
        self,
        owner: str | None = None,
        title: str | None = None,
        session_id: str | None = None,
        *,
        persona: str | None = None,
        user_id: str | None = None,
        exist_ok: bool = True,
        safety_locale: str | None = None,
    ) -> SessionRecord:
        """A new session. A given ``session_id`` must match ``^[A-Za-z0-9_-]{1,64}$``; if it already exists
        for the same owner that session is returned (so a racing resume is harmless) unless ``exist_ok`` is
        False (SessionExistsError); another owner's id is refused with ``session_id_unavailable``."""
        sid = new_session_id() if session_id is None else session_id
        if not is_valid_session_id(sid):
            raise InvalidInputError("session id must be 1-64 letters, digits, '-' or '_'", code="invalid_session_id")
        if user_id is not None and not is_valid_session_id(user_id):
            raise InvalidInputError("user id must be 1-64 letters, digits, '-' or '_'", code="invalid_user_id")
        clean_title = title.strip()[:TITLE_MAX_CHARS] if title and title.strip() else None
        now = utcnow()
        row = SessionRow(
            id=sid,
            owner=owner,
            title=clean_title,
            created_at=now,
            updated_at=now,
            persona=persona,
            user_id=user_id,
            safety_locale=safety_locale,
        )
        try:
            with self._sessions.begin() as db:
                db.add(row)
        except IntegrityError:
            if session_id is None:
                raise
            try:
                existing = self.get_session(sid, owner)
            except SessionNotFoundError:
                if not exist_ok:
                    raise SessionExistsError("a session with this id already exists") from None
                raise InvalidInputError("session id is not available", code="session_id_unavailable") from None
            if not exist_ok:
                raise SessionExistsError("a session with this id already exists") from None
            return existing
        logger.info("session created", extra={"session_id": sid})
        return _session_record(row, 0)

    def get_session(self, session_id: str, owner: str | None = None) -> SessionRecord:
        with self._sessions() as db:
            return self._get_session(db, session_id, owner)

    def list_sessions(self, owner: str | None = None, limit: int = 100) -> list[SessionRecord]:
        """Newest first (by creation); with ``owner`` only that owner's sessions."""
        stmt = _owned(select(SessionRow, _turn_count_column()), owner)
        stmt = stmt.order_by(SessionRow.created_at.desc(), SessionRow.id.desc()).limit(max(limit, 0))
        with self._sessions() as db:
            return [_session_record(row, count) for row, count in db.execute(stmt).all()]

    def set_persona(self, session_id: str, persona: str | None) -> None:
        """Store the persona chosen for a session (None: the default). SessionNotFoundError if it is gone."""
        self._set_session(session_id, persona=persona)

    def set_safety_locale(self, session_id: str, locale: str | None) -> None:
        """Store whose crisis numbers a session gets (None: safety.locale). SessionNotFoundError if it is gone."""
        self._set_session(session_id, safety_locale=locale)

    def _set_session(self, session_id: str, **values: Any) -> None:
        with self._sessions.begin() as db:
            changed = db.execute(update(SessionRow).where(SessionRow.id == session_id).values(**values))
            if changed.rowcount == 0:  # type: ignore[attr-defined]
                raise SessionNotFoundError("session not found")

    def delete_session(self, session_id: str, owner: str | None = None) -> None:
        """Delete a session; its turns, the memories learned in it and its insights go with it (ON DELETE
        CASCADE)."""
        stmt = delete(SessionRow).where(SessionRow.id == session_id)
        if owner is not None:
            stmt = stmt.where(SessionRow.owner == owner)
        with self._sessions.begin() as db:
            if db.execute(stmt).rowcount == 0:  # type: ignore[attr-defined]
                raise SessionNotFoundError("session not found")
        logger.info("session deleted", extra={"session_id": session_id})

    def count(self, owner: str | None = None) -> int:
        """Number of sessions (with ``owner``: that owner's)."""
        with self._sessions() as db:
            return int(db.scalar(_owned(select(func.count(SessionRow.id)), owner)) or 0)

    # --- turns --------------------------------------------------------------------------------------

    def add_turn(
        self,
        session_id: str,
        role: Role,
        text: str,
        *,
        emotion: dict[str, Any] | None = None,
        timings: dict[str, Any] | None = None,
        duration_s: float | None = None,
        interrupted: bool = False,
        safety: dict[str, Any] | None = None,
    ) -> TurnRecord:
        """Store one turn and commit before returning. Bumps the session's ``updated_at``; the first user
        turn titles an untitled session (a flagged one never does: its words stay out of session lists)."""
        if role not in _ROLES:
            raise InvalidInputError("role must be 'user' or 'assistant'", code="invalid_role")
        now = utcnow()
        values: dict[str, Any] = {"updated_at": now}
        flagged = bool(safety and safety.get("flagged"))
        if role == "user" and not flagged and (title := title_from_text(text)) is not None:
            values["title"] = func.coalesce(SessionRow.title, title)
        row = TurnRow(
            session_id=session_id,
            role=role,
            text=text,
            emotion=emotion,
            timings=timings,
            duration_s=duration_s,
            interrupted=interrupted,
            created_at=now,
            safety=safety,
        )
        with self._sessions.begin() as db:
            # The write comes first: it takes SQLite's write lock and proves the session exists.
            bumped = db.execute(update(SessionRow).where(SessionRow.id == session_id).values(**values))
            if bumped.rowcount == 0:  # type: ignore[attr-defined]
                raise SessionNotFoundError("session not found")
            db.add(row)
            db.flush()
            record = _turn_record(row)
        return record

    def update_turn(
        self,
        turn_id: int,
        *,
        text: str | None = None,
        timings: dict[str, Any] | None = None,
        interrupted: bool | None = None,
    ) -> TurnRecord:
        """Correct a stored turn (a reply cut by barge-in, final metrics). Fields left None are kept.
        Raises SessionNotFoundError if the turn is gone (its session was deleted)."""
        values: dict[str, Any] = {}
        if text is not None:
            values["text"] = text
        if timings is not None:
            values["timings"] = timings
        if interrupted is not None:
            values["interrupted"] = interrupted
        with self._sessions.begin() as db:
            if values:
                db.execute(update(TurnRow).where(TurnRow.id == turn_id).values(**values))
            row = db.get(TurnRow, turn_id, populate_existing=True)
            if row is None:
                raise SessionNotFoundError("turn not found")
            return _turn_record(row)

    def history(self, session_id: str, owner: str | None = None, limit: int | None = None) -> list[TurnRecord]:
        """Turns oldest first; with ``limit`` the most recent ``limit`` turns, in chronological order."""
        with self._sessions() as db:
            self._get_session(db, session_id, owner)
            return [_turn_record(row) for row in self._turns(db, session_id, limit)]

    def recent_history(self, session_id: str, max_turns: int) -> list[HistoryTurn]:
        """The last ``max_turns`` turns for the prompt builder (no ownership check; unknown session = [])."""
        if max_turns <= 0:
            return []
        with self._sessions() as db:
            rows = self._turns(db, session_id, max_turns)
            return [
                HistoryTurn(role=cast(Role, r.role), text=r.text, emotion=_emotion_label(r.emotion), safety=r.safety)
                for r in rows
            ]

    def ping(self) -> None:
        """One round trip to the database (``SELECT 1``); raises if it cannot be reached. For readiness."""
        with self._engine.connect() as connection:
            connection.execute(select(1))

    def close(self) -> None:
        self._engine.dispose()

    # --- helpers ------------------------------------------------------------------------------------

    @staticmethod
    def _get_session(db: Session, session_id: str, owner: str | None) -> SessionRecord:
        stmt = _owned(select(SessionRow, _turn_count_column()).where(SessionRow.id == session_id), owner)
        found = db.execute(stmt).first()
        if found is None:
            raise SessionNotFoundError("session not found")
        return _session_record(found[0], found[1])

    @staticmethod
    def _turns(db: Session, session_id: str, limit: int | None) -> Sequence[TurnRow]:
        stmt = select(TurnRow).where(TurnRow.session_id == session_id)
        if limit is None:
            return db.scalars(stmt.order_by(TurnRow.id)).all()
        newest = db.scalars(stmt.order_by(TurnRow.id.desc()).limit(max(limit, 0))).all()
        return list(reversed(newest))


def _emotion_label(emotion: dict[str, Any] | None) -> str | None:
    label = emotion.get("label") if emotion else None
    return label if isinstance(label, str) else None
