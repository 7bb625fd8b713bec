"""Barge-in: stopping the running reply (speech over it, a cancel, a client's truncate) and knowing what of it the
listener was sent.

The sender marks each reply chunk as its audio leaves (``mark_sending``); the playback ledger remembers which
text each piece of audio spoke, so an interrupted reply is stored as the words actually sent or heard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from backend.core.metrics import Metrics
from backend.pipeline import events
from backend.pipeline.output_queue import OutputQueue
from backend.pipeline.turn_queue import TurnQueue
from backend.pipeline.turn_taking import PlaybackLedger
from backend.store.async_store import AsyncSessionStore


class BargeIn:
    def __init__(
        self,
        *,
        turns: TurnQueue,
        out: OutputQueue,
        store: AsyncSessionStore,
        metrics: Metrics,
        emit_control: Callable[[events.PipelineEvent], None],
        output_sample_rate: int,
    ) -> None:
        self._turns, self._out, self._store, self._metrics = turns, out, store, metrics
        self._emit_control = emit_control
        self._output_sample_rate = output_sample_rate
        self._ledger = PlaybackLedger()

    async def interrupt(self) -> bool:
        """Stop the reply now, drop its queued audio, tell the client. True if one ran."""
        active = self._turns.active
        if active is None or not active[1].responding or active[0].done():
            return False
        task, state = active
        task.cancel()
        self._out.drop_audio(state.turn_id)
        await asyncio.wait([task])
        self._metrics.interruptions.inc()
        self._emit_control(events.Interrupted(state.turn_id, state.spoken_text()))
        return True

    def mark_sending(self, item: events.PipelineEvent) -> None:
        """Called by the sender as an item leaves: records which reply chunks the client was sent."""
        active = self._turns.active
        if isinstance(item, events.ReplyAudioChunk) and active is not None:
            _, state = active
            if state.turn_id == item.turn_id:
                state.sent_chunks.add(item.chunk_index)
                self._ledger.record(state, item)

    async def truncate(self, turn_id: str, audio_end_s: float) -> str:
        """The listener heard only the first ``audio_end_s`` seconds of this reply: stop it if it is still
        running, and store the words heard as the assistant turn (interrupted). Returns that text."""
        active = self._turns.active
        if active is not None and active[1].turn_id == turn_id:
            await self.interrupt()  # returns once the turn has ended and stored what was sent
        heard = self._ledger.heard_text(turn_id, audio_end_s, self._output_sample_rate)
        state = self._ledger.state(turn_id)
        if state is not None and state.stored_reply_id is not None:
            await self._store.update_turn(state.stored_reply_id, text=heard, interrupted=True)
        return heard
