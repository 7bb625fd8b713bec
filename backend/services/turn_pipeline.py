"""One turn: transcription -> emotion -> response -> speech, streamed to a TurnOutput.

Streaming mode: LLM tokens feed a sentence chunker and each chunk is synthesized and sent as soon as it is
ready, so the first audio leaves before the reply is finished. Sequential mode (the seed product's way, kept
for comparison): the full reply, then the full speech, then send. Every model call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel

from backend.config import Settings
from backend.core.async_bridge import iterate_in_thread, run_blocking
from backend.core.audio_utils import pcm16_to_float32
from backend.core.exceptions import BusyError, ClarityError
from backend.core.metrics import Metrics
from backend.models.response import (
    AudioEndEvent,
    AudioStartEvent,
    EmotionEvent,
    MetricsEvent,
    ResponseDeltaEvent,
    ResponseEvent,
    StatusEvent,
    TranscriptEvent,
)
from backend.services.interfaces import ChatMessage, EmotionResult, FloatAudio, Transcription, VoiceStyle
from backend.services.model_service import ModelService
from backend.services.prompt_builder import build_messages
from backend.services.sentence_chunker import SentenceChunker
from backend.services.session_service import SessionStore
from backend.services.speakable import clean_for_speech
from backend.services.tts_service import voice_style_for

logger = logging.getLogger(__name__)

MAX_REPLY_SENTENCES = 3
SENTENCE_ENDS = (".", "!", "?")


class NoSpeechError(ClarityError):
    code = "no_speech"
    http_status = 422
    retryable = True


@dataclass
class TurnInput:
    turn_id: str
    session_id: str
    t0: float  # perf_counter() at the end of the user's speech (or when the text arrived)
    text: str | None = None
    audio: bytes | None = None  # PCM16 mono 16 kHz utterance
    transcript: asyncio.Future[Transcription] | None = None  # started speculatively during the hangover
    confirmed: asyncio.Event | None = None  # set when a turn started early at a pause is confirmed
    duration_s: float | None = None
    speak: bool = True
    marks: dict[str, float] = field(default_factory=dict)


@dataclass
class TurnState:
    """What the client was actually sent of the reply; the sender marks chunks as their audio goes out."""

    turn_id: str
    chunks: list[str] = field(default_factory=list)
    sent_chunks: set[int] = field(default_factory=set)
    reply_text: str = ""
    responding: bool = False  # the LLM has started: speech from now on is a barge-in

    def spoken_text(self) -> str:
        return " ".join(self.chunks[i] for i in sorted(self.sent_chunks) if i < len(self.chunks))


@dataclass(frozen=True)
class TurnResult:
    transcript: str
    reply: str
    emotion: EmotionResult
    timings: dict[str, float]


class TurnOutput(Protocol):
    async def send(self, event: BaseModel) -> None: ...

    async def send_audio(self, turn_id: str, pcm: bytes, chunk_index: int) -> None: ...

    async def flush(self) -> None:
        """Wait until everything sent so far has left for the client."""
        ...


@dataclass(frozen=True)
class _Chunk:
    text: str


@dataclass(frozen=True)
class _EndOfReply:
    pass


class Executors:
    """Worker threads per stage, so a long generation never delays another connection's STT or TTS."""

    def __init__(self, settings: Settings) -> None:
        self.stt = ThreadPoolExecutor(2, thread_name_prefix="stt")
        self.emotion = ThreadPoolExecutor(2, thread_name_prefix="emotion")
        self.llm = ThreadPoolExecutor(max(1, settings.llm.max_concurrent), thread_name_prefix="llm")
        self.tts = ThreadPoolExecutor(1, thread_name_prefix="tts")
        self.db = ThreadPoolExecutor(2, thread_name_prefix="db")

    def shutdown(self) -> None:
        for pool in (self.stt, self.emotion, self.llm, self.tts, self.db):
            pool.shutdown(wait=False, cancel_futures=True)


class TurnPipeline:
    def __init__(self, models: ModelService, store: SessionStore, settings: Settings, metrics: Metrics) -> None:
        self.models = models
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.executors = Executors(settings)
        self._llm_slots = asyncio.Semaphore(max(1, settings.llm.max_concurrent))
        self._turn_slots = asyncio.Semaphore(max(1, settings.limits.max_active_turns))

    def close(self) -> None:
        self.executors.shutdown()

    def transcribe_soon(self, pcm: bytes) -> asyncio.Future[Transcription]:
        """Start transcribing in the STT pool now; the turn awaits the result later (speculative STT)."""
        future = asyncio.ensure_future(
            run_blocking(self.executors.stt, self.models.stt.transcribe, pcm16_to_float32(pcm))
        )
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # an unused one must not warn
        return future

    async def db(self, fn: Callable[..., object], *args: object) -> object:
        return await run_blocking(self.executors.db, fn, *args)

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

        history_task = asyncio.ensure_future(
            run_blocking(
                self.executors.db,
                self.store.recent_history,
                turn.session_id,
                self.settings.mentor.max_history_turns,
            )
        )
        await out.send(StatusEvent(message="Processing..."))
        audio: FloatAudio | None = None
        if turn.audio is not None:
            await out.send(StatusEvent(message="Transcribing..."))
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
        await out.send(TranscriptEvent(turn_id=turn.turn_id, text=text))
        if not text:
            history_task.cancel()
            raise NoSpeechError("no words were recognised in that audio; please say it again")

        await out.send(StatusEvent(message="Detecting emotion..."))
        start = time.perf_counter()
        emotion = await run_blocking(self.executors.emotion, self.models.emotion.detect, text, audio)
        stages["emotion"] = time.perf_counter() - start
        mark("emotion")
        await out.send(EmotionEvent(turn_id=turn.turn_id, data=emotion.to_dict()))

        history = await history_task
        user_stored = asyncio.ensure_future(self._store_user(turn, text, emotion))
        guidance = emotion.label if emotion.confidence >= self.settings.emotion.min_confidence else "neutral"
        messages = build_messages(
            self.models.mentor_prompt,
            history,
            text,
            guidance,
            count_tokens=self.models.llm.count_tokens,
            max_prompt_tokens=self.settings.llm.max_prompt_tokens,
        )
        style = voice_style_for(guidance, self.settings.tts)

        await out.send(StatusEvent(message="Generating response..."))
        state.responding = True
        try:
            if self.settings.pipeline.mode == "streaming":
                reply = await self._streaming_reply(turn, out, state, messages, style, mark, stages)
            else:
                reply = await self._sequential_reply(turn, out, state, messages, style, mark, stages)
            await out.flush()
        except BaseException:  # cancelled (barge-in, disconnect) or failed (slow client): keep what was sent
            if turn.confirmed is not None and not turn.confirmed.is_set():
                user_stored.cancel()  # an early start the user talked over: nothing was sent or stored
                raise
            await asyncio.shield(self._store_reply(turn, state, user_stored, interrupted=True, timings=marks))
            raise
        await self._store_reply(turn, state, user_stored, interrupted=False, timings=marks)
        stages["turn_total"] = time.perf_counter() - turn.t0
        timings = {**marks, **{f"{k}_s": round(v, 4) for k, v in stages.items()}}
        self.metrics.observe_timings(stages)
        if "first_audio" in marks:
            self.metrics.ttfa_seconds.labels(mode=self.settings.pipeline.mode).observe(marks["first_audio"])
        self.metrics.turns.labels(kind="voice" if turn.audio is not None else "text", outcome="ok").inc()
        await out.send(
            MetricsEvent(
                turn_id=turn.turn_id,
                timings=timings,
                speculative_stt=turn.transcript is not None,
                early_start=turn.confirmed is not None,
            )
        )
        logger.info(
            "turn completed",
            extra={"turn_id": turn.turn_id, "session_id": turn.session_id, "timings": timings},
        )
        return TurnResult(transcript=text, reply=reply, emotion=emotion, timings=timings)

    async def _store_user(self, turn: TurnInput, text: str, emotion: EmotionResult) -> None:
        """Store the user's turn as soon as it is certain (at once, or when an early start is confirmed)."""
        if turn.confirmed is not None:
            await turn.confirmed.wait()
        await run_blocking(
            self.executors.db,
            lambda: self.store.add_turn(
                turn.session_id, "user", text, emotion=emotion.to_dict(), duration_s=turn.duration_s
            ),
        )

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
        # Interrupted voice turns keep what the client was sent as audio; text turns keep what was streamed.
        text = state.spoken_text() if (interrupted and turn.speak) else clean_for_speech(state.reply_text)
        await run_blocking(
            self.executors.db,
            lambda: self.store.add_turn(
                turn.session_id, "assistant", text, timings=dict(timings), interrupted=interrupted
            ),
        )

    async def _streaming_reply(
        self,
        turn: TurnInput,
        out: TurnOutput,
        state: TurnState,
        messages: list[ChatMessage],
        style: VoiceStyle,
        mark: Callable[[str], None],
        stages: dict[str, float],
    ) -> str:
        stop = threading.Event()
        chunker = SentenceChunker(first_chunk_min_words=self.settings.pipeline.first_chunk_min_words)
        speech_queue: asyncio.Queue[_Chunk | _EndOfReply] = asyncio.Queue()
        speaker = (
            asyncio.ensure_future(self._speak(turn, out, state, speech_queue, style, mark, stages))
            if turn.speak
            else None
        )
        parts: list[str] = []
        emitted: list[str] = []
        sentences = 0
        try:
            async with self._llm_slots:
                start = time.perf_counter()
                async for piece in iterate_in_thread(
                    self.executors.llm, lambda: self.models.llm.stream(messages, stop), stop
                ):
                    if not parts:
                        mark("first_token")
                        stages["llm_first_token"] = time.perf_counter() - start
                    parts.append(piece)
                    state.reply_text = "".join(parts)
                    await out.send(ResponseDeltaEvent(turn_id=turn.turn_id, text=piece))
                    for chunk in chunker.push(piece):
                        emitted.append(chunk)
                        speech_queue.put_nowait(_Chunk(chunk))
                        sentences += chunk.rstrip().endswith(SENTENCE_ENDS)
                    if sentences >= MAX_REPLY_SENTENCES:
                        stop.set()
                        break
                stages["llm_total"] = time.perf_counter() - start
            capped = sentences >= MAX_REPLY_SENTENCES
            if not capped:
                for chunk in chunker.flush():
                    emitted.append(chunk)
                    speech_queue.put_nowait(_Chunk(chunk))
            speech_queue.put_nowait(_EndOfReply())
            # A reply cut at the sentence cap is exactly what will be spoken.
            reply = clean_for_speech(" ".join(emitted) if capped else "".join(parts))
            state.reply_text = reply
            mark("response")
            await out.send(ResponseEvent(turn_id=turn.turn_id, text=reply))
            if speaker is not None:
                await speaker
            return reply
        finally:
            stop.set()
            if speaker is not None and not speaker.done():
                speaker.cancel()

    async def _speak(
        self,
        turn: TurnInput,
        out: TurnOutput,
        state: TurnState,
        queue: asyncio.Queue[_Chunk | _EndOfReply],
        style: VoiceStyle,
        mark: Callable[[str], None],
        stages: dict[str, float],
    ) -> None:
        tts = self.models.tts
        sent_bytes = 0
        tts_time = 0.0
        while True:
            item = await queue.get()
            if isinstance(item, _EndOfReply):
                break
            start = time.perf_counter()
            speech = await run_blocking(self.executors.tts, tts.synthesize, item.text, style)
            tts_time += time.perf_counter() - start
            if not speech.pcm:
                continue
            index = len(state.chunks)
            state.chunks.append(item.text)
            if sent_bytes == 0:
                stages["tts_first_chunk"] = tts_time
                await out.send(StatusEvent(message="Synthesizing speech..."))
                await out.send(AudioStartEvent(turn_id=turn.turn_id, sample_rate=speech.sample_rate))
            sent_bytes += await self._send_speech(turn, out, speech.pcm, speech.sample_rate, index, mark)
        stages["tts_total"] = tts_time
        if sent_bytes:
            mark("last_audio")
            await out.send(
                AudioEndEvent(
                    turn_id=turn.turn_id,
                    bytes=sent_bytes,
                    duration_s=round(sent_bytes / 2 / tts.sample_rate, 3),
                )
            )

    async def _send_speech(
        self,
        turn: TurnInput,
        out: TurnOutput,
        pcm: bytes,
        sample_rate: int,
        index: int,
        mark: Callable[[str], None],
    ) -> int:
        step = max(2, int(sample_rate * self.settings.pipeline.audio_chunk_ms / 1000) * 2)
        for offset in range(0, len(pcm), step):
            if "first_audio" not in turn.marks:
                mark("first_audio")
            await out.send_audio(turn.turn_id, pcm[offset : offset + step], index)
        return len(pcm)

    async def _sequential_reply(
        self,
        turn: TurnInput,
        out: TurnOutput,
        state: TurnState,
        messages: list[ChatMessage],
        style: VoiceStyle,
        mark: Callable[[str], None],
        stages: dict[str, float],
    ) -> str:
        stop = threading.Event()
        async with self._llm_slots:
            start = time.perf_counter()
            pieces = await run_blocking(self.executors.llm, lambda: list(self.models.llm.stream(messages, stop)))
            stages["llm_total"] = time.perf_counter() - start
        mark("first_token")
        chunker = SentenceChunker(first_chunk_min_words=10_000)
        sentences = [c for p in pieces for c in chunker.push(p)] + chunker.flush()
        reply = clean_for_speech(" ".join(sentences[:MAX_REPLY_SENTENCES]))
        state.reply_text = reply
        mark("response")
        await out.send(ResponseEvent(turn_id=turn.turn_id, text=reply))
        if not turn.speak or not reply:
            return reply
        await out.send(StatusEvent(message="Synthesizing speech..."))
        start = time.perf_counter()
        speech = await run_blocking(self.executors.tts, self.models.tts.synthesize, reply, style)
        stages["tts_total"] = stages["tts_first_chunk"] = time.perf_counter() - start
        if speech.pcm:
            state.chunks.append(reply)
            await out.send(AudioStartEvent(turn_id=turn.turn_id, sample_rate=speech.sample_rate))
            sent = await self._send_speech(turn, out, speech.pcm, speech.sample_rate, 0, mark)
            mark("last_audio")
            await out.send(
                AudioEndEvent(turn_id=turn.turn_id, bytes=sent, duration_s=round(sent / 2 / speech.sample_rate, 3))
            )
        return reply
