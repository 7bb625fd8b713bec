"""One turn: transcription -> emotion -> response -> speech, streamed to a TurnOutput.

The reply half (LLM -> chunker -> TTS, streaming or sequential) is in reply_speaker.py. Every model call runs
in a worker thread; the user's turn is stored as soon as it is certain and the reply as far as it was sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TypeVar

from backend.config import Settings
from backend.core.async_bridge import run_blocking
from backend.core.audio_utils import pcm16_to_float32
from backend.core.exceptions import BusyError
from backend.core.metrics import Metrics
from backend.engines.model_service import ModelService
from backend.engines.protocols import EmotionResult, FloatAudio, Transcription
from backend.mentor.prompt_builder import MentorPrompt, build_messages, load_mentor_prompt, next_prompt_prefix
from backend.mentor.speakable import clean_for_speech
from backend.mentor.voice_style import voice_style_for
from backend.pipeline.events import EmotionDetected, StageStarted, TranscriptFinal, TurnDone
from backend.pipeline.reply_speaker import ReplySpeaker
from backend.pipeline.turn_types import Executors, NoSpeechError, TurnInput, TurnOutput, TurnResult, TurnState
from backend.store.async_store import AsyncSessionStore
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
    ) -> None:
        self.models = models
        self.mentor_prompt = mentor_prompt or load_mentor_prompt(settings.mentor)
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.executors = Executors(settings)
        self._llm_slots = metrics.slots("llm", max(1, settings.llm.max_concurrent))
        self._turn_slots = metrics.slots("turn", max(1, settings.limits.max_active_turns))
        self._background: set[asyncio.Future[None]] = set()

    def close(self) -> None:
        for task in self._background:
            task.cancel()
        self.executors.shutdown()

    def warm_next_turn(self, session_id: str | None) -> asyncio.Future[None] | None:
        """Prefill the start of the session's next prompt in the background (llm.warm_between_turns).

        ``None`` warms what every new session starts with (the system prompt), so the first turn of a fresh
        session is as fast as a later one; the lifespan calls it once the models are loaded."""
        if not self.settings.llm.warm_between_turns:
            return None
        task = asyncio.ensure_future(self._warm_next_turn(session_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _warm_next_turn(self, session_id: str | None) -> None:
        llm, settings = self.models.llm, self.settings

        def warm(history: list[HistoryTurn]) -> int:
            prefix = next_prompt_prefix(
                self.mentor_prompt,
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
            async with self._llm_slots:
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

    def transcribe_soon(self, pcm: bytes) -> asyncio.Future[Transcription]:
        """Start transcribing in the STT pool now; the turn awaits the result later (speculative STT)."""
        future = asyncio.ensure_future(
            run_blocking(self.executors.stt, self.models.stt.transcribe, pcm16_to_float32(pcm))
        )
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

        def mark(name: str) -> None:
            marks[name] = round(time.perf_counter() - turn.t0, 4)

        history_task = asyncio.ensure_future(self._history(turn))
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
            raise NoSpeechError("no words were recognised in that audio; please say it again")

        await out.emit(StageStarted(turn.turn_id, "detecting_emotion"))
        start = time.perf_counter()
        emotion = await run_blocking(self.executors.emotion, self.models.emotion.detect, text, audio)
        stages["emotion"] = time.perf_counter() - start
        mark("emotion")
        await out.emit(EmotionDetected(turn.turn_id, emotion))

        history = await history_task
        user_stored = asyncio.ensure_future(self._store_user(turn, text, emotion))
        guidance = emotion.label if emotion.confidence >= self.settings.emotion.min_confidence else "neutral"
        messages = build_messages(
            self.mentor_prompt,
            history,
            text,
            guidance,
            count_tokens=self.models.llm.count_tokens,
            max_prompt_tokens=self.settings.llm.max_prompt_tokens,
        )
        style = voice_style_for(guidance, self.settings.tts)

        await out.emit(StageStarted(turn.turn_id, "generating"))
        state.responding = True
        try:
            speaker = ReplySpeaker(
                turn, out, state, messages, style, self.models, self.executors, self._llm_slots, self.settings, stages
            )
            reply = await speaker.run()
            await out.flush()
        except BaseException:  # cancelled (barge-in, disconnect) or failed (slow client): keep what was sent
            if turn.confirmed is not None and not turn.confirmed.is_set():
                user_stored.cancel()  # an early start the user talked over: nothing was sent or stored
                raise
            await asyncio.shield(self._store_reply(turn, state, user_stored, interrupted=True, timings=marks))
            raise
        await self._store_reply(turn, state, user_stored, interrupted=False, timings=marks)
        if turn.history is None:
            self.warm_next_turn(turn.session_id)
        stages["turn_total"] = time.perf_counter() - turn.t0
        timings = {**marks, **{f"{k}_s": round(v, 4) for k, v in stages.items()}}
        self.metrics.observe_timings(stages)
        if "first_audio" in marks:
            self.metrics.ttfa_seconds.labels(mode=self.settings.pipeline.mode).observe(marks["first_audio"])
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
        return TurnResult(transcript=text, reply=reply, emotion=emotion, timings=timings)

    async def _history(self, turn: TurnInput) -> list[HistoryTurn]:
        limit = self.settings.mentor.max_history_turns
        if turn.history is not None:  # a stateless turn (the caller holds the conversation)
            return turn.history[-limit:] if limit > 0 else []
        return await self.store.recent_history(turn.session_id, limit)

    async def _store_user(self, turn: TurnInput, text: str, emotion: EmotionResult) -> None:
        """Store the user's turn as soon as it is certain (at once, or when an early start is confirmed)."""
        if turn.history is not None:
            return
        if turn.confirmed is not None:
            await turn.confirmed.wait()
        await self.store.add_turn(turn.session_id, "user", text, emotion=emotion.to_dict(), duration_s=turn.duration_s)

    async def _store_reply(
        self,
        turn: TurnInput,
        state: TurnState,
        user_stored: asyncio.Future[None],
        *,
        interrupted: bool,
        timings: dict[str, float],
    ) -> None:
        await user_stored
        if turn.history is not None:
            return
        # Interrupted voice turns keep what the client was sent as audio; text turns keep what was streamed.
        text = state.spoken_text() if (interrupted and turn.speak) else clean_for_speech(state.reply_text)
        record = await self.store.add_turn(
            turn.session_id, "assistant", text, timings=dict(timings), interrupted=interrupted
        )
        state.stored_reply_id = record.id
