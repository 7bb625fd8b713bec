"""Holds the output of a turn started early, at a pause in speech, until the end of speech is confirmed.

The early-start policy (pipeline/early_start.py) starts a provisional turn when the user pauses
(``SpeechPaused``): transcription, emotion, the LLM and the first sentence of speech all run during the VAD
hangover. If the utterance really ended, the
gate opens and everything held is sent at once; if the user goes on, the turn is cancelled and nothing was sent
or stored. Time to first audio no longer includes the hangover.
"""

from __future__ import annotations

import asyncio

from backend.pipeline.events import PipelineEvent
from backend.pipeline.turn_types import TurnOutput


class GatedOutput:
    """A TurnOutput that buffers until ``open()``, then forwards in order to ``target``."""

    def __init__(self, target: TurnOutput) -> None:
        self._target = target
        self._held: list[PipelineEvent] = []
        self._lock = asyncio.Lock()
        self.opened = asyncio.Event()

    async def emit(self, event: PipelineEvent) -> None:
        async with self._lock:
            if self.opened.is_set():
                await self._target.emit(event)
            else:
                self._held.append(event)

    async def flush(self) -> None:
        await self.opened.wait()
        await self._target.flush()

    async def open(self) -> None:
        """Confirm the turn: send everything held, in order, then pass through."""
        async with self._lock:
            for event in self._held:
                await self._target.emit(event)
            self._held.clear()
            self.opened.set()
