"""The pipeline's own typed events: what a conversation tells its wire, in the order it happens.

No wire names here. Each wire (backend/api/v1_events.py for /ws/voice, the SSE mapping of the text chat) maps
these to its own messages; a new wire is one more mapping. Audio travels as ``ReplyAudioChunk`` events too,
so one ordered stream carries everything a turn produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from backend.engines.protocols import EmotionResult

Stage = Literal["processing", "transcribing", "detecting_emotion", "generating", "synthesizing"]


@dataclass(frozen=True)
class SessionReady:
    """The conversation's session and audio formats (at connect, and after a session switch)."""

    session_id: str
    resumed: bool
    input_sample_rate: int
    output_sample_rate: int
    mode: Literal["streaming", "sequential"]
    persona: str | None = None  # the session's persona id


@dataclass(frozen=True)
class SpeechStarted:
    turn_id: str
    ago_s: float = 0.0  # the speech began this much audio before the event


@dataclass(frozen=True)
class SpeechStopped:
    turn_id: str
    duration_s: float
    discarded: bool = False  # too short to be speech (a click, a cough): no turn follows
    committed: bool = False  # ended by the client's commit, not by silence
    silence_s: float = 0.0  # the silence after the words that ended it (0 for a commit)


@dataclass(frozen=True)
class StageStarted:
    """A stage of the turn begins (the seed product showed these as status lines)."""

    turn_id: str
    stage: Stage


@dataclass(frozen=True)
class TranscriptPartial:
    """What has been heard so far of speech still in progress (may change)."""

    turn_id: str
    text: str


@dataclass(frozen=True)
class TranscriptFinal:
    turn_id: str
    text: str


@dataclass(frozen=True)
class EmotionDetected:
    turn_id: str
    emotion: EmotionResult


@dataclass(frozen=True)
class SafetyChecked:
    """The crisis protocol's reading of the user's message, before any reply (docs/SAFETY.md). ``safety`` is
    {flagged, category, level, mode}; ``resources`` the numbers to show when it is flagged or in safety mode."""

    turn_id: str
    safety: dict[str, object]
    resources: dict[str, str | None] | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.safety.get("flagged"))


@dataclass(frozen=True)
class ReplyTextDelta:
    turn_id: str
    text: str


@dataclass(frozen=True)
class ReplyTextDone:
    turn_id: str
    text: str  # the whole reply, cleaned for speech


@dataclass(frozen=True)
class ReplyAudioStarted:
    turn_id: str
    sample_rate: int


@dataclass(frozen=True)
class ReplyAudioChunk:
    turn_id: str
    pcm: bytes  # PCM16 little-endian mono at the announced sample rate
    chunk_index: int  # which synthesized text chunk this audio speaks


@dataclass(frozen=True)
class ReplyAudioDone:
    turn_id: str
    bytes: int
    duration_s: float


@dataclass(frozen=True)
class Interrupted:
    """The reply was stopped (barge-in or cancel); ``spoken_text`` is what the client was sent of it."""

    turn_id: str
    spoken_text: str


@dataclass(frozen=True)
class TurnDone:
    turn_id: str
    timings: dict[str, float]  # seconds from end of speech (or text received) to each milestone
    speculative_stt: bool = False
    early_start: bool = False
    # The crisis protocol's reading of the turn, as on every wire's final message: {flagged, category, level,
    # mode} and reply_blocked when the reply check stopped the model's reply.
    safety: dict[str, object] | None = None


@dataclass(frozen=True)
class ErrorOccurred:
    code: str
    message: str
    retryable: bool = False


PipelineEvent = (
    SessionReady
    | SpeechStarted
    | SpeechStopped
    | StageStarted
    | TranscriptPartial
    | TranscriptFinal
    | EmotionDetected
    | SafetyChecked
    | ReplyTextDelta
    | ReplyTextDone
    | ReplyAudioStarted
    | ReplyAudioChunk
    | ReplyAudioDone
    | Interrupted
    | TurnDone
    | ErrorOccurred
)
