"""What the mentor remembers of each user: salient facts with their sentence embeddings. All methods block.

Whose memories they are is a ``scope`` (``memory_scope``): with the app's own ``user_id``, the API key's
fingerprint and that user id, so the same key and user id recall them in any session; without one, the session
itself (memory never crosses sessions without an identity: with auth off every caller is the same anonymous
owner, and one key may serve many people). Embeddings are stored in the database as float32 bytes; ``vectors``
keeps each recently used scope's matrix in memory and checks it with one indexed query per call (count and newest
id), loading only rows added since, so retrieval at 10,000 memories costs one small query and one matrix product,
on SQLite and PostgreSQL alike, and stays correct when another replica adds or deletes memories."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, Engine, delete, func, or_, select, update
from sqlalchemy.orm import sessionmaker

from backend.core.exceptions import ClarityError, SessionNotFoundError
from backend.store.schema import MemoryRow, SessionRow, utcnow

CACHED_SCOPES = 64  # users whose matrices stay in memory (least recently used dropped first)


class MemoryNotFoundError(ClarityError):
    code = "memory_not_found"
    http_status = 404


def memory_scope(owner: str | None, user_id: str | None, session_id: str) -> str:
    """Whose a memory is: ``<key>/<user_id>`` (auth off: key ``-``) when the session has a user id, else the
    session's own ``<key>/-/<session_id>``. Without a user id, memory stays within its session.

    ``-`` as a user id counts as none: before sessions had their own scope, ``<key>/-`` was every anonymous
    caller's shared scope, and those rows must never be recalled into anyone's prompt again."""
    key = owner or "-"
    if user_id and user_id != "-":
        return f"{key}/{user_id}"
    return f"{key}/-/{session_id}"


def sessions_scope(owner: str | None) -> str:
    """For listing and deleting only: every memory the key kept without a user id (each session's own scope, and
    the shared ``<key>/-`` of earlier versions). Never a scope to recall from or add to."""
    return f"{owner or '-'}/-/*"


def _in_scope(scope: str) -> ColumnElement[bool]:
    """The rows of ``scope``; a ``sessions_scope`` is the key's old shared scope and its sessions' scopes."""
    if not scope.endswith("/-/*"):
        return MemoryRow.scope == scope
    prefix = scope[:-1]  # "<key>/-/", which each of the key's session scopes starts with
    return or_(MemoryRow.scope == prefix[:-1], MemoryRow.scope.startswith(prefix, autoescape=True))


def _one_scope(scope: str) -> str:
    if scope.endswith("/*"):
        raise ValueError(f"{scope!r} lists several scopes: memories are recalled and kept per scope")
    return scope


@dataclass(frozen=True)
class MemoryRecord:
    id: int
    session_id: str
    turn_id: int | None
    kind: str
    text: str
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class MemoryVectors:
    """A scope's memories as arrays, oldest first: ``matrix`` rows are L2-normalised embeddings."""

    ids: NDArray[np.int64]
    matrix: NDArray[np.float32]
    texts: tuple[str, ...]
    session_ids: tuple[str, ...]
    max_id: int

    def __len__(self) -> int:
        return len(self.ids)


EMPTY = MemoryVectors(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), (), (), 0)


def _record(row: MemoryRow) -> MemoryRecord:
    return MemoryRecord(row.id, row.session_id, row.turn_id, row.kind, row.text, row.created_at, row.last_seen_at)


@dataclass
class _Cached:
    """A scope's vectors and the buffer their matrix is a view of: new rows are written past the end (the
    earlier views never see them), so adding a memory does not copy the whole matrix."""

    count: int  # rows in the database when loaded (including any of another dimension)
    vectors: MemoryVectors
    buffer: NDArray[np.float32]


def _extend(rows: list[Any], before: _Cached | None) -> _Cached:
    """``before`` extended with ``rows`` of (id, embedding, text, session_id); rows of another dimension than the
    first are skipped (a changed embedding model)."""
    old = before.vectors if before is not None else EMPTY
    count = (before.count if before is not None else 0) + len(rows)
    if not rows:
        return _Cached(count, old, before.buffer if before is not None else old.matrix)
    dim = old.matrix.shape[1] if len(old) else len(rows[0][1]) // 4
    kept = [r for r in rows if len(r[1]) == dim * 4]
    max_id = int(rows[-1][0])
    if not kept:
        vectors = MemoryVectors(old.ids, old.matrix, old.texts, old.session_ids, max_id)
        return _Cached(count, vectors, before.buffer if before is not None else old.matrix)
    new = np.frombuffer(b"".join(r[1] for r in kept), dtype="<f4").reshape(len(kept), dim)
    n, total = len(old), len(old) + len(kept)
    buffer = before.buffer if before is not None and len(old) else np.zeros((0, dim), np.float32)
    if buffer.shape[0] < total:  # grow by half again, copying once
        grown = np.empty((max(total, int(buffer.shape[0] * 1.5) + 16), dim), dtype=np.float32)
        if n:
            grown[:n] = old.matrix
        buffer = grown
    buffer[n:total] = new
    vectors = MemoryVectors(
        ids=np.concatenate([old.ids, np.array([r[0] for r in kept], dtype=np.int64)]),
        matrix=buffer[:total],
        texts=old.texts + tuple(r[2] for r in kept),
        session_ids=old.session_ids + tuple(r[3] for r in kept),
        max_id=max_id,
    )
    return _Cached(count, vectors, buffer)


class MemoryStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()

    def add(
        self, scope: str, session_id: str, turn_id: int | None, kind: str, text: str, embedding: NDArray[np.float32]
    ) -> MemoryRecord:
        """Keep one fact. SessionNotFoundError if its session is gone (deleted meanwhile)."""
        now = utcnow()
        row = MemoryRow(
            scope=_one_scope(scope),
            session_id=session_id,
            turn_id=turn_id,
            kind=kind,
            text=text,
            embedding=np.asarray(embedding, dtype="<f4").tobytes(),
            created_at=now,
            last_seen_at=now,
        )
        with self._sessions.begin() as db:
            if db.get(SessionRow, session_id) is None:
                raise SessionNotFoundError("session not found")
            db.add(row)
            db.flush()
            return _record(row)

    def touch(self, memory_id: int) -> None:
        """The user said it again: refresh when it was last heard."""
        with self._sessions.begin() as db:
            db.execute(update(MemoryRow).where(MemoryRow.id == memory_id).values(last_seen_at=utcnow()))

    def list(self, scope: str, limit: int = 100, offset: int = 0) -> tuple[list[MemoryRecord], int]:
        """The scope's memories (a ``sessions_scope``: all of them), newest first, and how many it has in all."""
        stmt = select(MemoryRow).where(_in_scope(scope)).order_by(MemoryRow.id.desc())
        with self._sessions() as db:
            rows = db.scalars(stmt.limit(max(limit, 0)).offset(max(offset, 0))).all()
            total = db.scalar(select(func.count(MemoryRow.id)).where(_in_scope(scope))) or 0
            return [_record(r) for r in rows], int(total)

    def delete(self, scope: str, memory_id: int) -> None:
        """Forget one memory; MemoryNotFoundError if the scope has no such memory (another user's included)."""
        stmt = delete(MemoryRow).where(MemoryRow.id == memory_id, _in_scope(scope))
        with self._sessions.begin() as db:
            if db.execute(stmt).rowcount == 0:  # type: ignore[attr-defined]
                raise MemoryNotFoundError("memory not found")

    def delete_all(self, scope: str) -> int:
        """Forget everything of the scope; returns how many memories went."""
        with self._sessions.begin() as db:
            stmt = delete(MemoryRow).where(_in_scope(scope))
            return int(db.execute(stmt).rowcount)  # type: ignore[attr-defined]

    def trim(self, scope: str, keep: int) -> int:
        """Drop the scope's oldest memories beyond ``keep``; returns how many went."""
        scope = _one_scope(scope)
        with self._sessions.begin() as db:
            cutoff = db.scalar(
                select(MemoryRow.id).where(MemoryRow.scope == scope).order_by(MemoryRow.id.desc()).offset(keep)
            )
            if cutoff is None:
                return 0
            stmt = delete(MemoryRow).where(MemoryRow.scope == scope, MemoryRow.id <= cutoff)
            return int(db.execute(stmt).rowcount)  # type: ignore[attr-defined]

    def vectors(self, scope: str) -> MemoryVectors:
        """The scope's memories as a matrix (cached; checked against the database on every call)."""
        scope = _one_scope(scope)
        fields = (MemoryRow.id, MemoryRow.embedding, MemoryRow.text, MemoryRow.session_id)
        with self._sessions() as db:
            count, max_id = db.execute(
                select(func.count(MemoryRow.id), func.max(MemoryRow.id)).where(MemoryRow.scope == scope)
            ).one()
            count, max_id = int(count), int(max_id or 0)
            with self._lock:
                cached = self._cache.get(scope)
                if cached is not None:
                    self._cache.move_to_end(scope)
            if cached is not None and (cached.count, cached.vectors.max_id) == (count, max_id):
                return cached.vectors
            fresh: _Cached | None = None
            if cached is not None and max_id > cached.vectors.max_id:
                newer = (MemoryRow.scope == scope, MemoryRow.id > cached.vectors.max_id)
                rows = db.execute(select(*fields).where(*newer).order_by(MemoryRow.id)).all()
                if cached.count + len(rows) == count:  # only additions since: extend the cached matrix
                    fresh = _extend(list(rows), cached)
            if fresh is None:
                rows = db.execute(select(*fields).where(MemoryRow.scope == scope).order_by(MemoryRow.id)).all()
                fresh = _extend(list(rows), None)
        with self._lock:
            self._cache[scope] = fresh
            self._cache.move_to_end(scope)
            while len(self._cache) > CACHED_SCOPES:
                self._cache.popitem(last=False)
        return fresh.vectors
