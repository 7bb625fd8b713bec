"""The store's own door for async code: every call runs in the store's worker pool, never on the event loop.

REST routes, the turn pipeline and the disconnect path all use this one facade, so a slow database never
borrows a model's thread and a model never holds up a REST call. ``sync`` is the blocking store underneath
(for scripts, tests and the metrics callback).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from backend.core.async_bridge import run_blocking
from backend.store.insights import InsightState, NewUserTurn
from backend.store.memories import MemoryRecord, MemoryVectors
from backend.store.records import HistoryTurn
from backend.store.sessions import Role, SessionRecord, SessionStore, TurnRecord

DEFAULT_WORKERS = 4


class AsyncSessionStore:
    def __init__(self, store: SessionStore, workers: int = DEFAULT_WORKERS) -> None:
        self.sync = store
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="store")

    async def create_session(
        self, owner: str | None = None, title: str | None = None, session_id: str | None = None, **options: Any
    ) -> SessionRecord:
        """See SessionStore.create_session (options: persona, user_id, exist_ok)."""
        return await run_blocking(self._pool, lambda: self.sync.create_session(owner, title, session_id, **options))

    async def set_persona(self, session_id: str, persona: str | None) -> None:
        await run_blocking(self._pool, self.sync.set_persona, session_id, persona)

    async def set_safety_locale(self, session_id: str, locale: str | None) -> None:
        await run_blocking(self._pool, self.sync.set_safety_locale, session_id, locale)

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

    # --- memories (store/memories.py) and insights (store/insights.py) ---------------------------------

    async def add_memory(
        self, scope: str, session_id: str, turn_id: int | None, kind: str, text: str, embedding: NDArray[np.float32]
    ) -> MemoryRecord:
        return await run_blocking(
            self._pool, lambda: self.sync.memories.add(scope, session_id, turn_id, kind, text, embedding)
        )

    async def touch_memory(self, memory_id: int) -> None:
        await run_blocking(self._pool, self.sync.memories.touch, memory_id)

    async def memory_vectors(self, scope: str) -> MemoryVectors:
        return await run_blocking(self._pool, self.sync.memories.vectors, scope)

    async def list_memories(self, scope: str, limit: int = 100, offset: int = 0) -> tuple[list[MemoryRecord], int]:
        return await run_blocking(self._pool, self.sync.memories.list, scope, limit, offset)

    async def delete_memory(self, scope: str, memory_id: int) -> None:
        await run_blocking(self._pool, self.sync.memories.delete, scope, memory_id)

    async def delete_memories(self, scope: str) -> int:
        return await run_blocking(self._pool, self.sync.memories.delete_all, scope)

    async def trim_memories(self, scope: str, keep: int) -> int:
        return await run_blocking(self._pool, self.sync.memories.trim, scope, keep)

    async def insights(self, session_id: str) -> InsightState:
        return await run_blocking(self._pool, self.sync.insights.get, session_id)

    async def user_turns_after(self, session_id: str, turn_id: int) -> list[NewUserTurn]:
        return await run_blocking(self._pool, self.sync.insights.user_turns_after, session_id, turn_id)

    async def put_insights(self, session_id: str, state: InsightState) -> None:
        await run_blocking(self._pool, self.sync.insights.put, session_id, state)

    async def ping(self) -> None:
        """Raise if the database cannot be reached (readiness)."""
        await run_blocking(self._pool, self.sync.ping)

    def close(self) -> None:
        """Let running calls finish, then release the pool and the engine's connections."""
        self._pool.shutdown(wait=True)
        self.sync.close()
