"""What one turn reads from and writes to the session store: the history and the memory matrix it starts from,
the user's turn (once certain) and the mentor's reply (as far as it was sent), and the follow-ups scheduled
after it (memory and insights, pipeline/follow_up.py). A stateless turn (``turn.history`` given by the caller)
reads and stores nothing.
"""

from __future__ import annotations

import asyncio
import logging

from backend.config import Settings
from backend.engines.protocols import EmotionResult
from backend.mentor.speakable import clean_for_speech
from backend.pipeline.follow_up import FollowUps
from backend.pipeline.turn_types import TurnHooks, TurnInput, TurnState
from backend.store.async_store import AsyncSessionStore
from backend.store.memories import MemoryVectors
from backend.store.records import HistoryTurn

logger = logging.getLogger(__name__)


class TurnStore:
    def __init__(self, store: AsyncSessionStore, settings: Settings, follow_ups: FollowUps) -> None:
        self.store, self.settings, self.follow_ups = store, settings, follow_ups

    async def history(self, turn: TurnInput) -> list[HistoryTurn]:
        limit = self.settings.mentor.max_history_turns
        if turn.history is not None:  # a stateless turn (the caller holds the conversation)
            return turn.history[-limit:] if limit > 0 else []
        return await self.store.recent_history(turn.session_id, limit)

    async def memory_vectors(self, turn: TurnInput) -> MemoryVectors | None:
        """The user's memory matrix (None: no memory for this turn). Started with the turn, so its database
        check runs while the audio is transcribed, off the critical path."""
        if turn.memory_scope is None or turn.history is not None or not self.follow_ups.memory_on:
            return None
        try:
            return await self.store.memory_vectors(turn.memory_scope)
        except asyncio.CancelledError:
            raise
        except Exception:  # the turn goes on without memories
            logger.warning("memories could not be read", extra={"session_id": turn.session_id}, exc_info=True)
            return None

    def follow_up(
        self, turn: TurnInput, text: str, user_stored: asyncio.Future[int | None], *, remember: bool = True
    ) -> None:
        """Memory and insights for this turn, in the background (pipeline/follow_up.py); ``remember=False``:
        insights only (a turn the crisis protocol answered is never kept as a memory)."""
        if turn.history is None:
            scope = turn.memory_scope if remember else None
            self.follow_ups.schedule(turn.session_id, scope, user_stored, text)

    async def store_user(
        self,
        turn: TurnInput,
        hooks: TurnHooks,
        text: str,
        emotion: EmotionResult,
        safety: dict[str, object] | None = None,
    ) -> int | None:
        """Store the user's turn as soon as it is certain (at once, or when an early start is confirmed);
        returns its id (None for a stateless turn)."""
        if turn.history is not None:
            return None
        await hooks.confirmed()
        record = await self.store.add_turn(
            turn.session_id, "user", text, emotion=emotion.to_dict(), duration_s=turn.duration_s, safety=safety
        )
        return record.id

    async def store_reply(
        self,
        turn: TurnInput,
        state: TurnState,
        user_stored: asyncio.Future[int | None],
        *,
        interrupted: bool,
        timings: dict[str, float],
        safety: dict[str, object] | None = None,
    ) -> None:
        await user_stored
        if turn.history is not None:
            return
        # Interrupted voice turns keep what the client was sent as audio; text turns keep what was streamed.
        text = state.spoken_text() if (interrupted and turn.speak) else clean_for_speech(state.reply_text)
        record = await self.store.add_turn(
            turn.session_id, "assistant", text, timings=dict(timings), interrupted=interrupted, safety=safety
        )
        state.stored_reply_id = record.id
