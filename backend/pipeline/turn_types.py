"""The data of one turn, shared by the turn pipeline, the reply speaker, the conversation and the text chat."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from backend.config import Settings
from backend.core.exceptions import ClarityError
from backend.engines.protocols import EmotionResult, Transcription
from backend.pipeline.events import PipelineEvent
from backend.store.records import HistoryTurn


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
    duration_s: float | None = None
    speak: bool = True
    marks: dict[str, float] = field(default_factory=dict)
    # Given by a stateless caller (OpenAI chat completions): the prompt's history, nothing read or stored.
    history: list[HistoryTurn] | None = None
    persona: str | None = None  # the session's persona id (None: the default; backend/mentor/personas.py)
    memory_scope: str | None = None  # whose memories to use and grow (store/memories.py); None: no memory
    safety_locale: str | None = None  # whose crisis numbers (None: safety.locale; docs/SAFETY.md)


@dataclass
class TurnState:
    """What the client was actually sent of the reply; the sender marks chunks as their audio goes out."""

    turn_id: str
    chunks: list[str] = field(default_factory=list)
    sent_chunks: set[int] = field(default_factory=set)
    reply_text: str = ""
    responding: bool = False  # the LLM has started: speech from now on is a barge-in
    stored_reply_id: int | None = None  # the store's id of the assistant turn, once stored

    def spoken_text(self) -> str:
        return " ".join(self.chunks[i] for i in sorted(self.sent_chunks) if i < len(self.chunks))


@dataclass(frozen=True)
class TurnResult:
    transcript: str
    reply: str
    emotion: EmotionResult
    timings: dict[str, float]
    # The crisis protocol's reading of the turn: {flagged, category, level, mode} (pipeline/safety_guard.py).
    safety: dict[str, object] = field(default_factory=lambda: {"flagged": False, "category": None, "level": None})


class TurnOutput(Protocol):
    """Where a turn's events go: a connection's output queue, a gate, a recording in tests."""

    async def emit(self, event: PipelineEvent) -> None: ...

    async def flush(self) -> None:
        """Wait until everything sent so far has left for the client."""
        ...


class TurnHooks(Protocol):
    """How a running turn talks back to turn taking: the one interface between the pipeline and the
    conversation. A turn started early at a pause gets pipeline/early_start.py's; every other turn CONFIRMED."""

    @property
    def early(self) -> bool:
        """The turn started at a pause, before the end of speech was confirmed."""
        ...

    async def transcribed(self, turn: TurnInput, text: str) -> None:
        """The words are known. Called right after transcription, before anything else runs on the cores (an
        early start reads here whether the words are a finished turn)."""
        ...

    def is_confirmed(self) -> bool:
        """The turn is the real one (nothing of an unconfirmed turn is sent or stored)."""
        ...

    async def confirmed(self) -> None:
        """Return once the turn is confirmed."""
        ...


class _Confirmed:
    """The hooks of a turn that is certain from the start (after the end of speech, typed, or committed)."""

    early = False

    async def transcribed(self, turn: TurnInput, text: str) -> None:
        return None

    def is_confirmed(self) -> bool:
        return True

    async def confirmed(self) -> None:
        return None


CONFIRMED: TurnHooks = _Confirmed()


class Executors:
    """Worker threads per stage, so a long generation never delays another connection's STT or TTS."""

    def __init__(self, settings: Settings) -> None:
        self.stt = ThreadPoolExecutor(2, thread_name_prefix="stt")
        # Partial transcripts get their own thread: a turn's transcription never queues behind a preview.
        self.preview_stt = ThreadPoolExecutor(1, thread_name_prefix="stt-preview")
        self.emotion = ThreadPoolExecutor(2, thread_name_prefix="emotion")
        # A reply paused by the LLM scheduler (pipeline/llm_scheduler.py) keeps its thread: one per active turn.
        llm_threads = max(settings.llm.max_concurrent, settings.limits.max_active_turns, 1)
        self.llm = ThreadPoolExecutor(llm_threads, thread_name_prefix="llm")
        self.tts = ThreadPoolExecutor(1, thread_name_prefix="tts")

    def shutdown(self) -> None:
        for pool in (self.stt, self.preview_stt, self.emotion, self.llm, self.tts):
            pool.shutdown(wait=False, cancel_futures=True)
