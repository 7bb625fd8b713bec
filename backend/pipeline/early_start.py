"""Early start: a turn run from a pause in speech, its output held until the end of speech is confirmed.

The EarlyStart turn policy (pipeline/turn_policy.py) starts a provisional turn at ``SpeechPaused``;
transcription, emotion, the LLM and the first sentence of speech run during the VAD hangover behind a
GatedOutput. The turn tells turn taking what it learns through EarlyTurnHooks (turn_types.TurnHooks): right after
transcription, alone on the cores, the turn-end model reads whether the words are a finished turn
(vad.turn_end_threshold); a confident reading ends the utterance after a shorter silence. If the speech ended at
the pause the turn is adopted by the turn queue and its output released; if the user went on it is cancelled,
nothing sent or stored. A change to the turn-end reading, or to what follows it, touches this file only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from backend.config import Settings
from backend.core.async_bridge import run_blocking
from backend.core.exceptions import ClarityError
from backend.engines.protocols import TurnEndReader
from backend.pipeline import events
from backend.pipeline.gated_output import GatedOutput
from backend.pipeline.services import PipelineServices
from backend.pipeline.session_binding import new_id
from backend.pipeline.turn_detector import SpeechPaused, SpeechStopped
from backend.pipeline.turn_policy import TurnPolicy
from backend.pipeline.turn_queue import TurnQueue
from backend.pipeline.turn_taking import TurnTaking
from backend.pipeline.turn_types import TurnInput, TurnState
from backend.pipeline.utterance import Utterance

logger = logging.getLogger(__name__)


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


class EarlyStart:
    """The early-start turn policy. At a pause, when nothing else is running or queued and the wire answers at
    once, a provisional turn starts; otherwise ``fallback`` (speculative transcription, or nothing). ``feed``
    takes the detector's events when the turn-end reading ends the utterance sooner."""

    def __init__(
        self,
        *,
        settings: Settings,
        turns: TurnQueue,
        utterance: Utterance,
        turn_taking: Callable[[], TurnTaking],
        feed: Callable[[object], Awaitable[None]],
        fallback: TurnPolicy,
    ) -> None:
        self._settings, self._turns, self._utterance = settings, turns, utterance
        self._pipeline, self._binding = turns.pipeline, turns.binding
        self._output, self._report_error = turns.output, turns.report_error
        self._turn_taking, self._feed, self._fallback = turn_taking, feed, fallback

    def paused(self, event: SpeechPaused) -> None:
        self._utterance.drop_provisional()
        if self._turn_taking().respond and not self._turns.busy:
            self._start(event)
        else:
            self._fallback.paused(event)

    async def stopped(self, event: SpeechStopped) -> bool:
        provisional, self._utterance.provisional = self._utterance.provisional, None
        if provisional is None:
            return False
        if provisional.judge is not None and provisional.judge is not asyncio.current_task():
            provisional.judge.cancel()
        if event.reason == "silence" and provisional.voiced_frames == event.voiced_frames:
            await self._confirm(provisional, event)
            return True
        provisional.task.cancel()
        return False

    def _start(self, event: SpeechPaused) -> None:
        """Run the turn from the pause on; the end of speech was ``pause_ms`` ago if the user does not go on."""
        gate = GatedOutput(self._output)
        hooks = EarlyTurnHooks(gate, self._pipeline.services, judged=self._settings.vad.turn_end_threshold is not None)
        turn = TurnInput(
            self._utterance.id or new_id(),
            self._binding.session.session_id,
            t0=time.perf_counter() - self._settings.vad.pause_ms / 1000,
            audio=event.audio,
            duration_s=round(len(event.audio) / 32000, 3),
            speak=self._turn_taking().speak,
        )
        self._binding.stamp(turn)
        state = TurnState(turn.turn_id)
        task = asyncio.create_task(self._run_gated(turn, state, gate, hooks), name=f"early-{turn.turn_id}")
        provisional = self._utterance.provisional = Provisional(event.voiced_frames, turn, state, gate, hooks, task)
        if hooks.reading is not None:
            provisional.judge = asyncio.create_task(
                self._judge_turn_end(event.voiced_frames, hooks.reading), name=f"turn-end-{turn.turn_id}"
            )

    async def _judge_turn_end(self, voiced_frames: int, reading: asyncio.Future[float | None]) -> None:
        """Turn-end model: when the words up to this pause read as a finished turn (vad.turn_end_threshold; the
        pipeline reads them right after transcribing), the end of speech comes after vad.turn_end_hangover_ms of
        silence. Unsure, or a model error: the hangover."""
        vad, metrics = self._settings.vad, self._pipeline.metrics
        try:
            probability = await reading
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("the turn-end model failed; the full hangover applies", exc_info=True)
            metrics.turn_end_readings.labels(outcome="error").inc()
            return
        threshold = vad.turn_end_threshold
        complete = probability is not None and threshold is not None and probability >= threshold
        if probability is not None:
            metrics.turn_end_readings.labels(outcome="complete" if complete else "unsure").inc()
        logger.debug("turn end judged", extra={"probability": probability, "complete": complete})
        provisional = self._utterance.provisional
        if not complete or provisional is None or provisional.voiced_frames != voiced_frames:
            return
        for event in self._utterance.detector.expect_end(voiced_frames, vad.turn_end_hangover_ms):
            await self._feed(event)

    async def _confirm(self, provisional: Provisional, event: SpeechStopped) -> None:
        """The user did not go on after the pause: the early turn is the real one. Release its output."""
        turn = provisional.turn
        turn.marks["speech_stopped"] = round(time.perf_counter() - turn.t0, 4)
        turn.duration_s = event.duration_s
        await self._output.emit(
            events.SpeechStopped(turn.turn_id, duration_s=round(event.duration_s, 3), silence_s=event.silence_s)
        )
        await self._binding.ensure_persisted()
        self._turns.adopt(turn, provisional.state, provisional.task)
        await provisional.gate.open()

    async def _run_gated(self, turn: TurnInput, state: TurnState, gate: GatedOutput, hooks: EarlyTurnHooks) -> None:
        try:
            await self._pipeline.run(turn, gate, state, hooks)
        except ClarityError as exc:
            await gate.opened.wait()  # reported only if the turn is confirmed
            self._report_error(exc)
        except Exception:
            logger.exception("turn failed", extra={"turn_id": turn.turn_id})
            await gate.opened.wait()
            self._report_error(ClarityError("the turn failed on the server", retryable=True))
