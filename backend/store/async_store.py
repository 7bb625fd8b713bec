"""The store's own door for async code: every call runs in the store's worker pool, never on the event loop.

REST routes, the turn pipeline and the disconnect path all use this one facade, so a slow database never
borrows a model's thread and a model never holds up a REST call. ``sync`` is the blocking store underneath
(for scripts, tests and the metrics callback).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backend.core.async_bridge import run_blocking
from backend.store.records import HistoryTurn
from backend.store.sessions import Role, SessionRecord, SessionStore, TurnRecord

DEFAULT_WORKERS = 4


class AsyncSessionStore:
    def __init__(self, store: SessionStore, workers: int = DEFAULT_WORKERS) -> None:
        self.sync = store
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="store")

    async def create_session(
        self, owner: str | None = None, title: str | None = None, session_id: str | None = None
    ) -> SessionRecord:
        return await run_blocking(self._pool, lambda: self.sync.create_session(owner, title, session_id))

    async def get_session(self, session_id: str, owner: str | None = None) -> SessionRecord:
        return await run_blocking(self._pool, self.sync.get_session, session_id, owner)

    async def list_sessions(self, owner: str | None = None, limit: int = 100) -> list[SessionRecord]:
        return await run_blocking(self._pool, self.sync.list_sessions, owner, limit)

    async def delete_session(self, session_id: str, owner: str | None = None) -> None:
        await run_blocking(self._pool, self.sync.delete_session, session_id, owner)

    async def add_turn(self, session_id: str, role: Role, text: str, **fields: Any) -> TurnRecord:
        return await run_blocking(self._pool, lambda: self.sync.add_turn(session_id, role, text, **fields))

    async def update_turn(self, turn_id: int, **fields: Any) -> TurnRecord:
        """Correct a stored turn (see SessionStore.update_turn)."""
        return await run_blocking(self._pool, lambda: self.sync.update_turn(turn_id, **fields))

    async def history(self, session_id: str, owner: str | None = None, limit: int | None = None) -> list[TurnRecord]:
        return await run_blocking(self._pool, self.sync.history, session_id, owner, limit)

    async def recent_history(self, session_id: str, max_turns: int) -> list[HistoryTurn]:
        return await run_blocking(self._pool, self.sync.recent_history, session_id, max_turns)

    async def ping(self) -> None:
        """Raise if the database cannot be reached (readiness)."""
        await run_blocking(self._pool, self.sync.ping)

    def close(self) -> None:
        """Let running calls finish, then release the pool and the engine's connections."""
        self._pool.shutdown(wait=True)
        self.sync.close()
