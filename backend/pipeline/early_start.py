"""Early start: a turn run from a pause in speech, its output held until the end of speech is confirmed.

The conversation starts a provisional turn at ``SpeechPaused``; transcription, emotion, the LLM and the first
sentence of speech run during the VAD hangover behind a GatedOutput. The turn tells turn taking what it learns
through EarlyTurnHooks (turn_types.TurnHooks): right after transcription, alone on the cores, the turn-end model
reads whether the words are a finished turn (vad.turn_end_threshold); a confident reading ends the utterance
after a shorter silence. A change to the turn-end reading touches this file only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from backend.core.async_bridge import run_blocking
from backend.engines.protocols import TurnEndReader
from backend.pipeline.gated_output import GatedOutput
from backend.pipeline.services import PipelineServices
from backend.pipeline.turn_types import TurnInput, TurnState


class EarlyTurnHooks:
    """The TurnHooks of a provisional turn: confirmed when its gate opens; with ``judged``, the turn-end reading
    of its words goes into ``reading`` (None: the engine cannot tell; a model error is set as its exception)."""

    early = True

    def __init__(self, gate: GatedOutput, services: PipelineServices, *, judged: bool) -> None:
        self._gate = gate
        self._services = services
        self.reading: asyncio.Future[float | None] | None = None
        if judged:
            self.reading = asyncio.get_running_loop().create_future()
            self.reading.add_done_callback(lambda f: f.cancelled() or f.exception())  # read by the judge, or not

    def is_confirmed(self) -> bool:
        return self._gate.opened.is_set()

    async def confirmed(self) -> None:
        await self._gate.opened.wait()

    async def transcribed(self, turn: TurnInput, text: str) -> None:
        """How likely ``text`` is a finished turn, by the LLM, into ``reading``. Awaited right after
        transcription, so it never competes with emotion detection or the reply's prefill for the cores."""
        target = self.reading
        if target is None or target.done():
            return
        llm = self._services.models.llm
        judge = llm.end_of_turn_probability if isinstance(llm, TurnEndReader) else None
        try:
            if judge is None:
                probability = None
            else:
                reading: asyncio.Future[float | None]
                reading = asyncio.ensure_future(run_blocking(self._services.executors.llm, judge, text))
                reading.add_done_callback(lambda f: f.cancelled() or f.exception())  # it may be left behind
                await asyncio.wait({reading, target}, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():  # the hangover confirmed the turn first (with other turns reading on
                    return  # the cores, a reading can queue): go on without it
                probability = reading.result()
        except asyncio.CancelledError:
            target.cancel()
            raise
        except Exception as exc:
            if not target.done():  # cancelled when the turn was confirmed or dropped before the reading came
                target.set_exception(exc)
            return
        turn.marks["turn_end_read"] = round(time.perf_counter() - turn.t0, 4)
        if not target.done():
            target.set_result(probability)


@dataclass
class Provisional:
    """A turn started at a pause in speech; its output is held until the end of speech is confirmed."""

    voiced_frames: int
    turn: TurnInput
    state: TurnState
    gate: GatedOutput
    hooks: EarlyTurnHooks
    task: asyncio.Task[None]
    judge: asyncio.Task[None] | None = None  # the turn-end model's reading of its words

    def cancel(self) -> None:
        self.task.cancel()
        if self.judge is not None:
            self.judge.cancel()


@dataclass(frozen=True)
class Adopted:
    """A confirmed provisional turn, handed to the worker already running."""

    turn: TurnInput
    state: TurnState
    task: asyncio.Task[None]
