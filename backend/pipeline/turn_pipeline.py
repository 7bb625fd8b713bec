"""One turn: transcription -> emotion -> response -> speech, streamed to a TurnOutput.

The reply half (LLM -> chunker -> TTS, streaming or sequential) is in reply_speaker.py; what all turns share
(personas, scheduler, slots, follow-ups, the crisis protocol, worker pools) in services.py. Every model call runs
in a worker thread; the user's turn is stored as soon as it is certain and the reply as far as it was sent
(turn_store.py: what a turn reads from and writes to the store).
Turn taking hears from the turn only through its TurnHooks (turn_types.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from backend.config import Settings
from backend.core.async_bridge import run_blocking
from backend.core.audio_utils import pcm16_to_float32
from backend.core.exceptions import BusyError
from backend.core.metrics import Metrics
from backend.engines.model_service import ModelService
from backend.engines.protocols import ContinuesPrefix, EmotionResult, FloatAudio
from backend.mentor.memory import Recalled, recall
from backend.mentor.openers import choose_opener
from backend.mentor.prompt_builder import build_messages, guidance_emotion
from backend.mentor.voice_style import voice_style_for
from backend.pipeline.events import EmotionDetected, SafetyChecked, StageStarted, TranscriptFinal, TurnDone
from backend.pipeline.reply_speaker import ReplySpeaker
from backend.pipeline.safety_guard import SafetyDecision
from backend.pipeline.services import PipelineServices
from backend.pipeline.turn_store import TurnStore
from backend.pipeline.turn_types import (
    CONFIRMED,
    NoSpeechError,
    TurnHooks,
    TurnInput,
    TurnOutput,
    TurnResult,
    TurnState,
)
from backend.store.async_store import AsyncSessionStore
from backend.store.memories import MemoryVectors
from backend.store.records import HistoryTurn

logger = logging.getLogger(__name__)


class TurnPipeline:
    """The procedure of one turn over the process's PipelineServices (``services``: the app builds them once and
    gives them to the API too; None builds them here, for a pipeline of its own: scripts, tests)."""

    def __init__(
        self,
        models: ModelService,
        store: AsyncSessionStore,
        settings: Settings,
        metrics: Metrics,
        *,
        services: PipelineServices | None = None,
    ) -> None:
        self.services = services or PipelineServices(models, store, settings, metrics)
        self.models = models
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.follow_ups = self.services.follow_ups  # memory + insights after a turn (scripts wait on it)
        self.turn_store = TurnStore(store, settings, self.follow_ups)  # what a turn reads and stores

    def close(self) -> None:
        self.services.close()

    def opener_for(self, turn: TurnInput, guidance: str, text: str, history: list[HistoryTurn]) -> str:
        """The opening clause of this turn's spoken reply ("" for none: pipeline.opening_clause off, sequential
        mode, a text reply, or an engine that cannot continue a given reply start)."""
        openers = self.services.openers
        if not turn.speak or not openers or not isinstance(self.models.llm, ContinuesPrefix):
            return ""
        return choose_opener(openers, guidance, text, [t.text for t in history if t.role == "assistant"])

    async def run(self, turn: TurnInput, out: TurnOutput, state: TurnState, hooks: TurnHooks = CONFIRMED) -> TurnResult:
        """Run one turn, telling turn taking through ``hooks`` (pipeline/early_start.py for a turn started at a
        pause). Cancelling it (barge-in, disconnect) stores the reply as far as it was sent."""
        slots = self.services.turn_slots
        try:
            await asyncio.wait_for(slots.acquire(), timeout=self.settings.limits.turn_wait_s)
        except TimeoutError:
            raise BusyError("the server is busy with other turns; try again shortly") from None
        self.metrics.active_turns.inc()
        try:
            return await self._run(turn, out, state, hooks)
        finally:
            self.metrics.active_turns.dec()
            slots.release()

    async def _run(self, turn: TurnInput, out: TurnOutput, state: TurnState, hooks: TurnHooks) -> TurnResult:
        marks = turn.marks
        stages: dict[str, float] = {}
        services = self.services
        safety = services.safety
        persona = services.personas.get(turn.persona)

        def mark(name: str) -> None:
            marks[name] = round(time.perf_counter() - turn.t0, 4)

        history_task = asyncio.ensure_future(self.turn_store.history(turn))
        memory_task = asyncio.ensure_future(self.turn_store.memory_vectors(turn))  # the database part, during STT
        await out.emit(StageStarted(turn.turn_id, "processing"))
        audio: FloatAudio | None = None
        if turn.audio is not None:
            await out.emit(StageStarted(turn.turn_id, "transcribing"))
            audio = pcm16_to_float32(turn.audio)
            start = time.perf_counter()
            if turn.transcript is not None:
                transcription = await turn.transcript
            else:
                transcription = await run_blocking(services.executors.stt, self.models.stt.transcribe, audio)
            stages["stt"] = time.perf_counter() - start
            text = transcription.text.strip()
            mark("transcript")
        else:
            text = (turn.text or "").strip()
        await out.emit(TranscriptFinal(turn.turn_id, text))
        if not text:
            history_task.cancel()
            memory_task.cancel()
            raise NoSpeechError("no words were recognised in that audio; please say it again")

        # The turn-end reading first, alone on the cores: it decides when the person is done (run beside emotion
        # detection, both slowed each other down), and the opening clause is held until then anyway.
        await hooks.transcribed(turn, text)
        # The crisis protocol reads every message before anything else does (docs/SAFETY.md).
        history = await history_task
        start = time.perf_counter()
        decision = await safety.decide(text, history, stateless=turn.history is not None)
        stages["safety"] = time.perf_counter() - start
        mark("safety")
        if decision.action != "normal":  # an ordinary turn's reading ({flagged: false}) is in its result only
            resources = safety.protocol.locale(turn.safety_locale).resources()
            await out.emit(SafetyChecked(turn.turn_id, decision.public(), resources))
        await out.emit(StageStarted(turn.turn_id, "detecting_emotion"))
        start = time.perf_counter()
        emotion = await run_blocking(services.executors.emotion, self.models.emotion.detect, text, audio)
        stages["emotion"] = time.perf_counter() - start
        mark("emotion")
        await out.emit(EmotionDetected(turn.turn_id, emotion))

        if decision.action in ("protocol", "safe_ack"):
            memory_task.cancel()
            return await self._written_turn(turn, out, state, hooks, text, emotion, decision, stages)
        if decision.history is not None:  # a stateless caller's history, checked again
            history = decision.history
        history = [t for t in history if not t.flagged]  # crisis words never go into a prompt
        user_stored = asyncio.ensure_future(self.turn_store.store_user(turn, hooks, text, emotion, decision.record()))
        start = time.perf_counter()
        memories = await self._recall(turn, text, history, memory_task)
        if memory_task.result() is not None:
            stages["memory"] = time.perf_counter() - start
        guidance = guidance_emotion(emotion, self.settings.emotion.min_confidence)
        messages = build_messages(
            services.prompt_for(persona),
            history,
            text,
            guidance,
            count_tokens=self.models.llm.count_tokens,
            max_prompt_tokens=self.settings.llm.max_prompt_tokens,
            memories=[m.text for m in memories],
        )
        style = voice_style_for(guidance, self.settings.tts, persona.voice)

        await out.emit(StageStarted(turn.turn_id, "generating"))
        state.responding = True
        speaker = ReplySpeaker(
            turn,
            out,
            state,
            messages,
            style,
            self.models,
            services.executors,
            services.llm_scheduler,
            self.settings,
            stages,
            persona.generation,
            opener=self.opener_for(turn, guidance, text, history),
            phrase_audio=services.phrase_audio,
            check_reply=safety.check_reply,
            holds=safety.holds,
            blocked_lines=safety.protocol.reply_blocked(turn.safety_locale),
            closing=safety.lines(decision, turn.safety_locale),
        )
        reply = await self._say(
            turn, out, state, hooks, text, user_stored, speaker.run, written=lambda: speaker.blocked is not None
        )
        if turn.history is None:
            services.warm_next_turn(turn.session_id, turn.persona)
        return await self._finish(turn, out, hooks, text, reply, emotion, stages, decision, speaker.blocked)

    async def _written_turn(
        self,
        turn: TurnInput,
        out: TurnOutput,
        state: TurnState,
        hooks: TurnHooks,
        text: str,
        emotion: EmotionResult,
        decision: SafetyDecision,
        stages: dict[str, float],
    ) -> TurnResult:
        """A turn the crisis protocol answers with the team's written words (a flagged message, or the person
        saying they are safe): no model writes any of it, nothing of it is remembered."""
        services = self.services
        if decision.verdict.flagged:
            services.safety.flagged(turn.session_id, turn.turn_id, decision.verdict, text)
        user_stored = asyncio.ensure_future(self.turn_store.store_user(turn, hooks, text, emotion, decision.record()))
        style = voice_style_for("neutral", self.settings.tts, services.personas.default.voice)
        await out.emit(StageStarted(turn.turn_id, "generating"))
        state.responding = True
        speaker = ReplySpeaker(
            turn,
            out,
            state,
            [],
            style,
            self.models,
            services.executors,
            services.llm_scheduler,
            self.settings,
            stages,
            phrase_audio=services.safety_audio,
        )
        lines = services.safety.lines(decision, turn.safety_locale)
        say = partial(speaker.written, lines)
        reply = await self._say(turn, out, state, hooks, text, user_stored, say, written=lambda: True, remember=False)
        return await self._finish(turn, out, hooks, text, reply, emotion, stages, decision, None)

    async def _say(
        self,
        turn: TurnInput,
        out: TurnOutput,
        state: TurnState,
        hooks: TurnHooks,
        text: str,
        user_stored: asyncio.Future[int | None],
        speak: Callable[[], Awaitable[str]],
        *,
        written: Callable[[], bool],
        remember: bool = True,
    ) -> str:
        """Say the reply (``speak``), then store it and schedule the turn's follow-up; cancelled (barge-in,
        disconnect) or failed (slow client), it stores what was sent and raises. ``written``: whether what was
        said is the protocol's words (stored as such, kept out of prompts); ``remember``: keep memories of the
        turn (never for a turn the protocol answered)."""

        def record() -> dict[str, object] | None:
            return {"written": True} if written() else None

        marks = turn.marks
        try:
            reply = await speak()
            await out.flush()
        except BaseException:
            if not hooks.is_confirmed():
                user_stored.cancel()  # an early start the user talked over: nothing was sent or stored
                raise
            await asyncio.shield(
                self.turn_store.store_reply(turn, state, user_stored, interrupted=True, timings=marks, safety=record())
            )
            self.turn_store.follow_up(turn, text, user_stored, remember=remember)
            raise
        await self.turn_store.store_reply(turn, state, user_stored, interrupted=False, timings=marks, safety=record())
        self.turn_store.follow_up(turn, text, user_stored, remember=remember)
        return reply

    async def _finish(
        self,
        turn: TurnInput,
        out: TurnOutput,
        hooks: TurnHooks,
        text: str,
        reply: str,
        emotion: EmotionResult,
        stages: dict[str, float],
        decision: SafetyDecision,
        blocked: str | None,
    ) -> TurnResult:
        marks = turn.marks
        stages["turn_total"] = time.perf_counter() - turn.t0
        timings = {**marks, **{f"{k}_s": round(v, 4) for k, v in stages.items()}}
        self.metrics.observe_timings(stages)
        if "first_audio" in marks:
            self.metrics.ttfa_seconds.labels(mode=self.settings.pipeline.mode).observe(marks["first_audio"])
        if "first_llm_audio" in marks:
            self.metrics.first_llm_audio_seconds.observe(marks["first_llm_audio"])
        self.metrics.turns.labels(kind="voice" if turn.audio is not None else "text", outcome="ok").inc()
        safety = decision.public() | ({"reply_blocked": True} if blocked else {})
        await out.emit(
            TurnDone(
                turn.turn_id,
                timings,
                speculative_stt=turn.transcript is not None,
                early_start=hooks.early,
                safety=safety,
            )
        )
        logger.info(
            "turn completed",
            extra={"turn_id": turn.turn_id, "session_id": turn.session_id, "timings": timings},
        )
        return TurnResult(transcript=text, reply=reply, emotion=emotion, timings=timings, safety=safety)

    async def _recall(
        self, turn: TurnInput, text: str, history: list[HistoryTurn], vectors_task: asyncio.Future[MemoryVectors | None]
    ) -> list[Recalled]:
        """What the user said in earlier sessions that fits this message (memory.top_k above min_similarity).
        The message's embedding is the one the emotion stage just made (cached) and the matrix was loaded during
        STT, so what is left on the critical path is one matrix-vector product."""
        vectors = await vectors_task
        embedder, memory = self.models.embedder, self.settings.memory
        if vectors is None or embedder is None:
            return []
        query = await run_blocking(self.services.executors.emotion, embedder.embed, [text])
        return recall(
            query[0],
            vectors,
            top_k=memory.top_k,
            min_similarity=memory.min_similarity,
            already_said=[t.text for t in history],
        )
