"""One turn: transcription -> emotion -> response -> speech, streamed to a TurnOutput.

The reply half (LLM -> chunker -> TTS, streaming or sequential) is in reply_speaker.py. Every model call runs
in a worker thread; the user's turn is stored as soon as it is certain and the reply as far as it was sent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TypeVar

from backend.config import Settings, resolve_path
from backend.core.async_bridge import run_blocking
from backend.core.audio_utils import pcm16_to_float32
from backend.core.exceptions import BusyError
from backend.core.metrics import Metrics
from backend.engines.model_service import ModelService
from backend.engines.protocols import EmotionResult, FloatAudio, Transcription
from backend.mentor.memory import Recalled, recall
from backend.mentor.openers import choose_opener, load_openers
from backend.mentor.personas import Persona, PersonaCatalog, load_personas
from backend.mentor.prompt_builder import (
    MentorPrompt,
    build_messages,
    guidance_emotion,
    load_mentor_prompt,
    next_prompt_prefix,
)
from backend.mentor.speakable import clean_for_speech
from backend.mentor.voice_style import voice_style_for
from backend.pipeline.events import EmotionDetected, SafetyChecked, StageStarted, TranscriptFinal, TurnDone
from backend.pipeline.follow_up import FollowUps
from backend.pipeline.llm_scheduler import LLMScheduler, Priority
from backend.pipeline.phrase_audio import PhraseAudio
from backend.pipeline.reply_speaker import ReplySpeaker
from backend.pipeline.running_turns import RunningTurns
from backend.pipeline.safety_guard import SafetyDecision, SafetyGuard
from backend.pipeline.turn_types import Executors, NoSpeechError, TurnInput, TurnOutput, TurnResult, TurnState
from backend.store.async_store import AsyncSessionStore
from backend.store.memories import MemoryVectors
from backend.store.records import HistoryTurn

logger = logging.getLogger(__name__)
T = TypeVar("T")


class TurnPipeline:
    def __init__(
        self,
        models: ModelService,
        store: AsyncSessionStore,
        settings: Settings,
        metrics: Metrics,
        mentor_prompt: MentorPrompt | None = None,
        personas: PersonaCatalog | None = None,
    ) -> None:
        self.models = models
        self.mentor_prompt = mentor_prompt or load_mentor_prompt(settings.mentor)  # the base persona's prompt
        self.personas = personas or load_personas(settings.mentor)
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.openers = load_openers(resolve_path(settings.mentor.openers_path)) if self._opens_replies() else {}
        self.executors = Executors(settings)
        # The clauses' speech, kept (the TTS is looked up when first used: models may load after this).
        self.phrase_audio = (
            PhraseAudio(lambda text, style: self.models.tts.synthesize(text, style), self.executors.tts)
            if self.openers
            else None
        )
        self.llm_scheduler = LLMScheduler(
            settings.llm.max_concurrent, *metrics.queue("llm"), paused=metrics.paused_replies
        )
        self._turn_slots = metrics.slots("turn", max(1, settings.limits.max_active_turns))
        self._background: set[asyncio.Future[None]] = set()
        self.running = RunningTurns()  # generations by session, for POST /api/sessions/{id}/cancel
        self.follow_ups = FollowUps(models, store, settings, self.executors)  # memory + insights after a turn
        self.safety = SafetyGuard(models, settings, metrics, self.executors)  # the crisis protocol
        # The protocol's sentences' speech, made once (its calm voice is the default persona's at neutral).
        self.safety_audio = PhraseAudio(
            lambda text, style: self.models.tts.synthesize(text, style), self.executors.tts
        )

    def close(self) -> None:
        for task in self._background:
            task.cancel()
        self.follow_ups.close()
        self.executors.shutdown()

    def _opens_replies(self) -> bool:
        pipeline = self.settings.pipeline
        return pipeline.opening_clause and pipeline.mode == "streaming"

    def opener_for(self, turn: TurnInput, guidance: str, text: str, history: list[HistoryTurn]) -> str:
        """The opening clause of this turn's spoken reply ("" for none: pipeline.opening_clause off, sequential
        mode, a text reply, or an engine that cannot continue a given reply start)."""
        if not turn.speak or not self.openers or not getattr(self.models.llm, "continues_prefix", False):
            return ""
        return choose_opener(self.openers, guidance, text, [t.text for t in history if t.role == "assistant"])

    def warm_openers(self) -> asyncio.Future[int] | None:
        """Synthesize every opening clause in the default persona's voice for its emotion, in the background.
        Other personas' clauses are kept as they are first spoken (a slower voice, such as Piper, would keep the
        cores busy for long at startup with all of them)."""
        if self.phrase_audio is None:
            return None
        tts, voice = self.settings.tts, self.personas.default.voice
        phrases = [(text, voice_style_for(e, tts, voice)) for e, texts in self.openers.items() for text in texts]
        task = asyncio.ensure_future(self.phrase_audio.warm(phrases))
        task.add_done_callback(lambda f: f.cancelled() or f.exception())  # a failure only loses the speed-up
        return task

    def warm_safety(self) -> asyncio.Future[int] | None:
        """Synthesize the protocol's sentences for the default locale in the background, so a spoken crisis
        turn's first audio comes as soon as any reply's."""
        if not self.safety.enabled:
            return None
        style = voice_style_for("neutral", self.settings.tts, self.personas.default.voice)
        lines = self.safety.protocol.all_lines(None)
        task = asyncio.ensure_future(self.safety_audio.warm([(line.say, style) for line in lines]))
        task.add_done_callback(lambda f: f.cancelled() or f.exception())  # a failure only loses the speed-up
        return task

    def prompt_for(self, persona: Persona) -> MentorPrompt:
        """The prompt of ``persona`` (its system prompt and guidance over the base ones)."""
        return persona.prompt(self.mentor_prompt)

    def warm_next_turn(self, session_id: str | None, persona: str | None = None) -> asyncio.Future[None] | None:
        """Prefill the start of the session's next prompt in the background (llm.warm_between_turns).

        ``None`` warms what every new session starts with (the system prompt), so the first turn of a fresh
        session is as fast as a later one; the lifespan calls it once the models are loaded. ``persona`` is the
        session's persona id (None: the default)."""
        if not self.settings.llm.warm_between_turns:
            return None
        task = asyncio.ensure_future(self._warm_next_turn(session_id, persona))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _warm_next_turn(self, session_id: str | None, persona: str | None) -> None:
        llm, settings = self.models.llm, self.settings
        prompt = self.prompt_for(self.personas.get(persona))

        def warm(history: list[HistoryTurn]) -> int:
            prefix = next_prompt_prefix(
                prompt,
                history,
                count_tokens=llm.count_tokens,
                max_prompt_tokens=settings.llm.max_prompt_tokens,
            )
            return llm.warm_prefix(prefix)

        try:
            history = (
                await self.store.recent_history(session_id, settings.mentor.max_history_turns)
                if session_id is not None
                else []
            )
            async with self.llm_scheduler.generation(threading.Event(), pausable=False, priority=Priority.BACKGROUND):
                start = time.perf_counter()
                tokens = await run_blocking(self.executors.llm, warm, history)
            logger.debug(
                "next prompt prefix warmed",
                extra={"session_id": session_id, "tokens": tokens, "seconds": round(time.perf_counter() - start, 3)},
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # only a lost speed-up: the next turn prefills it itself
            logger.warning("warming the next prompt failed", extra={"session_id": session_id}, exc_info=True)

    async def _read_turn_end(self, turn: TurnInput, text: str) -> None:
        """For an early start that asks (``turn.turn_end``): how likely ``text`` is a finished turn, by the LLM
        (None when the engine cannot tell), into that future; a model error goes into it too. Awaited right after
        transcription, so it never competes with emotion detection or the reply's prefill for the cores."""
        target = turn.turn_end
        if target is None or target.done():
            return
        judge = getattr(self.models.llm, "end_of_turn_probability", None)
        try:
            if judge is None:
                probability = None
            else:
                reading = asyncio.ensure_future(run_blocking(self.executors.llm, judge, text))
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

    def transcribe_soon(self, pcm: bytes, *, preview: bool = False) -> asyncio.Future[Transcription]:
        """Start transcribing in the STT pool now; the turn awaits the result later (speculative STT).
        ``preview``: a partial transcript, in its own one-thread pool so it never delays a turn's."""
        pool = self.executors.preview_stt if preview else self.executors.stt
        future = asyncio.ensure_future(run_blocking(pool, self.models.stt.transcribe, pcm16_to_float32(pcm)))
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # an unused one must not warn
        return future

    async def run(self, turn: TurnInput, out: TurnOutput, state: TurnState) -> TurnResult:
        """Run one turn. Cancelling it (barge-in, disconnect) stores the reply as far as it was sent."""
        try:
            await asyncio.wait_for(self._turn_slots.acquire(), timeout=self.settings.limits.turn_wait_s)
        except TimeoutError:
            raise BusyError("the server is busy with other turns; try again shortly") from None
        self.metrics.active_turns.inc()
        try:
            return await self._run(turn, out, state)
        finally:
            self.metrics.active_turns.dec()
            self._turn_slots.release()

    async def _run(self, turn: TurnInput, out: TurnOutput, state: TurnState) -> TurnResult:
        marks = turn.marks
        stages: dict[str, float] = {}
        persona = self.personas.get(turn.persona)

        def mark(name: str) -> None:
            marks[name] = round(time.perf_counter() - turn.t0, 4)

        history_task = asyncio.ensure_future(self._history(turn))
        memory_task = asyncio.ensure_future(self._memory_vectors(turn))  # the database part, during STT
        await out.emit(StageStarted(turn.turn_id, "processing"))
        audio: FloatAudio | None = None
        if turn.audio is not None:
            await out.emit(StageStarted(turn.turn_id, "transcribing"))
            audio = pcm16_to_float32(turn.audio)
            start = time.perf_counter()
            if turn.transcript is not None:
                transcription = await turn.transcript
            else:
                transcription = await run_blocking(self.executors.stt, self.models.stt.transcribe, audio)
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
        await self._read_turn_end(turn, text)
        # The crisis protocol reads every message before anything else does (docs/SAFETY.md).
        history = await history_task
        start = time.perf_counter()
        decision = await self.safety.decide(text, history, stateless=turn.history is not None)
        stages["safety"] = time.perf_counter() - start
        mark("safety")
        if decision.action != "normal":  # an ordinary turn's reading ({flagged: false}) is in its result only
            resources = self.safety.protocol.locale(turn.safety_locale).resources()
            await out.emit(SafetyChecked(turn.turn_id, decision.public(), resources))
        await out.emit(StageStarted(turn.turn_id, "detecting_emotion"))
        start = time.perf_counter()
        emotion = await run_blocking(self.executors.emotion, self.models.emotion.detect, text, audio)
        stages["emotion"] = time.perf_counter() - start
        mark("emotion")
        await out.emit(EmotionDetected(turn.turn_id, emotion))

        if decision.action in ("protocol", "safe_ack"):
            memory_task.cancel()
            return await self._written_turn(turn, out, state, text, emotion, decision, stages)
        if decision.history is not None:  # a stateless caller's history, checked again
            history = decision.history
        history = [t for t in history if not t.flagged]  # crisis words never go into a prompt
        user_stored = asyncio.ensure_future(self._store_user(turn, text, emotion, decision.record()))
        start = time.perf_counter()
        memories = await self._recall(turn, text, history, memory_task)
        if memory_task.result() is not None:
            stages["memory"] = time.perf_counter() - start
        guidance = guidance_emotion(emotion, self.settings.emotion.min_confidence)
        messages = build_messages(
            self.prompt_for(persona),
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
        try:
            speaker = ReplySpeaker(
                turn,
                out,
                state,
                messages,
                style,
                self.models,
                self.executors,
                self.llm_scheduler,
                self.settings,
                stages,
                persona.generation,
                opener=self.opener_for(turn, guidance, text, history),
                phrase_audio=self.phrase_audio,
                check_reply=self.safety.check_reply,
                holds=self.safety.holds,
                blocked_lines=self.safety.protocol.reply_blocked(turn.safety_locale),
                closing=self.safety.lines(decision, turn.safety_locale),
            )
            reply = await speaker.run()
            await out.flush()
        except BaseException:  # cancelled (barge-in, disconnect) or failed (slow client): keep what was sent
            if turn.confirmed is not None and not turn.confirmed.is_set():
                user_stored.cancel()  # an early start the user talked over: nothing was sent or stored
                raise
            await asyncio.shield(self._store_reply(turn, state, user_stored, interrupted=True, timings=marks))
            self._follow_up(turn, text, user_stored)
            raise
        # the protocol's words replaced the model's
        written: dict[str, object] | None = {"written": True} if speaker.blocked else None
        await self._store_reply(turn, state, user_stored, interrupted=False, timings=marks, safety=written)
        self._follow_up(turn, text, user_stored)
        if turn.history is None:
            self.warm_next_turn(turn.session_id, turn.persona)
        return await self._finish(turn, out, text, reply, emotion, stages, decision, speaker.blocked)

    async def _written_turn(
        self,
        turn: TurnInput,
        out: TurnOutput,
        state: TurnState,
        text: str,
        emotion: EmotionResult,
        decision: SafetyDecision,
        stages: dict[str, float],
    ) -> TurnResult:
        """A turn the crisis protocol answers with the team's written words (a flagged message, or the person
        saying they are safe): no model writes any of it, nothing of it is remembered."""
        marks = turn.marks
        if decision.verdict.flagged:
            self.safety.flagged(turn.session_id, turn.turn_id, decision.verdict, text)
        user_stored = asyncio.ensure_future(self._store_user(turn, text, emotion, decision.record()))
        style = voice_style_for("neutral", self.settings.tts, self.personas.default.voice)
        await out.emit(StageStarted(turn.turn_id, "generating"))
        state.responding = True
        speaker = ReplySpeaker(
            turn,
            out,
            state,
            [],
            style,
            self.models,
            self.executors,
            self.llm_scheduler,
            self.settings,
            stages,
            phrase_audio=self.safety_audio,
        )
        written: dict[str, object] = {"written": True}
        try:
            reply = await speaker.written(self.safety.lines(decision, turn.safety_locale))
            await out.flush()
        except BaseException:
            if turn.confirmed is not None and not turn.confirmed.is_set():
                user_stored.cancel()
                raise
            await asyncio.shield(
                self._store_reply(turn, state, user_stored, interrupted=True, timings=marks, safety=written)
            )
            raise
        await self._store_reply(turn, state, user_stored, interrupted=False, timings=marks, safety=written)
        if turn.history is None:  # insights only: a flagged turn's words are never kept as memories
            self.follow_ups.schedule(turn.session_id, None, user_stored, text)
        return await self._finish(turn, out, text, reply, emotion, stages, decision, None)

    async def _finish(
        self,
        turn: TurnInput,
        out: TurnOutput,
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
        await out.emit(
            TurnDone(
                turn.turn_id,
                timings,
                speculative_stt=turn.transcript is not None,
                early_start=turn.confirmed is not None,
            )
        )
        logger.info(
            "turn completed",
            extra={"turn_id": turn.turn_id, "session_id": turn.session_id, "timings": timings},
        )
        safety = decision.public() | ({"reply_blocked": True} if blocked else {})
        return TurnResult(transcript=text, reply=reply, emotion=emotion, timings=timings, safety=safety)

    async def _history(self, turn: TurnInput) -> list[HistoryTurn]:
        limit = self.settings.mentor.max_history_turns
        if turn.history is not None:  # a stateless turn (the caller holds the conversation)
            return turn.history[-limit:] if limit > 0 else []
        return await self.store.recent_history(turn.session_id, limit)

    async def _memory_vectors(self, turn: TurnInput) -> MemoryVectors | None:
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
        query = await run_blocking(self.executors.emotion, embedder.embed, [text])
        return recall(
            query[0],
            vectors,
            top_k=memory.top_k,
            min_similarity=memory.min_similarity,
            already_said=[t.text for t in history],
        )

    def _follow_up(self, turn: TurnInput, text: str, user_stored: asyncio.Future[int | None]) -> None:
        """Memory and insights for this turn, in the background (pipeline/follow_up.py)."""
        if turn.history is None:
            self.follow_ups.schedule(turn.session_id, turn.memory_scope, user_stored, text)

    async def _store_user(
        self, turn: TurnInput, text: str, emotion: EmotionResult, safety: dict[str, object] | None = None
    ) -> int | None:
        """Store the user's turn as soon as it is certain (at once, or when an early start is confirmed);
        returns its id (None for a stateless turn)."""
        if turn.history is not None:
            return None
        if turn.confirmed is not None:
            await turn.confirmed.wait()
        record = await self.store.add_turn(
            turn.session_id, "user", text, emotion=emotion.to_dict(), duration_s=turn.duration_s, safety=safety
        )
        return record.id

    async def _store_reply(
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
