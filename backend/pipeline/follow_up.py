"""After a turn, off its critical path: remember what the user said that matters, and update the insights.

A turn schedules its follow-up once its user message is stored; follow-ups of one session run one after the
other (each folds in every user turn the insights have not seen yet, so none is lost if one fails). Embedding
runs in the emotion stage's worker threads (the same MiniLM model), the store calls in the store's own pool.
"""

from __future__ import annotations

import asyncio
import logging

from backend.config import Settings
from backend.core.async_bridge import run_blocking
from backend.engines.model_service import ModelService
from backend.mentor.insights import update_summary
from backend.mentor.memory import find_duplicate, salient_facts
from backend.pipeline.turn_types import Executors
from backend.store.async_store import AsyncSessionStore

logger = logging.getLogger(__name__)


class FollowUps:
    def __init__(
        self, models: ModelService, store: AsyncSessionStore, settings: Settings, executors: Executors
    ) -> None:
        self.models = models
        self.store = store
        self.settings = settings
        self.executors = executors
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending: dict[str, int] = {}  # session id -> follow-ups scheduled and not finished
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def memory_on(self) -> bool:
        return self.settings.memory.enabled and self.models.embedder is not None

    def updating(self, session_id: str) -> bool:
        """True while a follow-up of the session is scheduled or running (on this replica)."""
        return self._pending.get(session_id, 0) > 0

    def schedule(
        self, session_id: str, scope: str | None, turn_id: asyncio.Future[int | None], text: str
    ) -> asyncio.Future[None]:
        """Run the follow-up of a turn once ``turn_id`` (the stored user turn's id) is known."""
        self._pending[session_id] = self._pending.get(session_id, 0) + 1
        task = asyncio.ensure_future(self._run(session_id, scope, turn_id, text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def idle(self) -> None:
        """Wait until every follow-up scheduled so far has finished (tests, shutdown)."""
        while tasks := [t for t in self._tasks if not t.done()]:
            await asyncio.wait(tasks)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _run(self, session_id: str, scope: str | None, turn_id: asyncio.Future[int | None], text: str) -> None:
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        try:
            stored_id = await asyncio.shield(turn_id)
            async with lock:
                if stored_id is not None and scope is not None and self.memory_on:
                    await self._remember(session_id, scope, stored_id, text)
                await self._update_insights(session_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # a lost memory or a stale summary; the next turn's follow-up catches up
            logger.warning("turn follow-up failed", extra={"session_id": session_id}, exc_info=True)
        finally:
            left = self._pending.get(session_id, 1) - 1
            if left > 0:
                self._pending[session_id] = left
            else:
                self._pending.pop(session_id, None)
                if not lock.locked():
                    self._locks.pop(session_id, None)

    async def _remember(self, session_id: str, scope: str, turn_id: int, text: str) -> None:
        facts = salient_facts(text)
        embedder = self.models.embedder
        if not facts or embedder is None:
            return
        embeddings = await run_blocking(self.executors.emotion, embedder.embed, [f.text for f in facts])
        memory = self.settings.memory
        for fact, embedding in zip(facts, embeddings, strict=True):
            vectors = await self.store.memory_vectors(scope)
            duplicate = find_duplicate(embedding, vectors, memory.duplicate_similarity)
            if duplicate is not None:
                await self.store.touch_memory(duplicate)
                continue
            await self.store.add_memory(scope, session_id, turn_id, fact.kind, fact.text, embedding)
            if len(vectors) + 1 > memory.max_per_user:
                await self.store.trim_memories(scope, memory.max_per_user)
        logger.debug("memories kept", extra={"session_id": session_id, "facts": len(facts)})

    async def _update_insights(self, session_id: str) -> None:
        state = await self.store.insights(session_id)
        new_turns = await self.store.user_turns_after(session_id, state.through_turn_id)
        if new_turns:
            await self.store.put_insights(session_id, update_summary(state, new_turns))
