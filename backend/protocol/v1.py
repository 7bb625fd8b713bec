"""/ws/voice protocol v1: client -> server events, then server -> client events (docs/PROTOCOL.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionStart(_Event):
    type: Literal["session.start"]
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None
    sample_rate: int | None = None
    mentor: str | None = None  # a persona id (GET /api/personas); switches this session's persona
    # Whose crisis line and emergency number (docs/SAFETY.md; e.g. US, GB, IE, AU); stored with the session.
    safety_locale: Annotated[str, Field(pattern=r"^[A-Za-z_-]{2,16}$")] | None = None
    user_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None  # the app's user: memory across sessions


class InputCommit(_Event):
    type: Literal["input.commit"]


class ResponseCancel(_Event):
    type: Literal["response.cancel"]


class TextInput(_Event):
    type: Literal["text"]
    text: Annotated[str, Field(min_length=1)]


ClientEvent = SessionStart | InputCommit | ResponseCancel | TextInput
CLIENT_EVENT_TYPES = ("session.start", "input.commit", "response.cancel", "text")
client_event_adapter: TypeAdapter[ClientEvent] = TypeAdapter(Annotated[ClientEvent, Field(discriminator="type")])


# --- server -> client ---------------------------------------------------------------------------------

PROTOCOL_VERSION = "1"


class SessionEvent(BaseModel):
    type: Literal["session"] = "session"
    session_id: str
    protocol: str = PROTOCOL_VERSION
    input_sample_rate: int
    output_sample_rate: int
    output_format: Literal["pcm_s16le"] = "pcm_s16le"
    resumed: bool = False
    mode: Literal["streaming", "sequential"] = "streaming"
    persona: str | None = None  # the session's persona id


class StatusEvent(BaseModel):
    type: Literal["status"] = "status"
    message: str


class SpeechStartedEvent(BaseModel):
    type: Literal["speech_started"] = "speech_started"
    turn_id: str


class SpeechStoppedEvent(BaseModel):
    type: Literal["speech_stopped"] = "speech_stopped"
    turn_id: str
    duration_s: float
    discarded: bool = False  # too short to be speech (a click, a cough): no turn follows


class TranscriptDeltaEvent(BaseModel):
    """What has been heard so far of speech still in progress; ``text`` is all of it (it may revise earlier
    words), and the turn's ``transcript`` event replaces it."""

    type: Literal["transcript.delta"] = "transcript.delta"
    turn_id: str
    text: str


class TranscriptEvent(BaseModel):
    type: Literal["transcript"] = "transcript"
    turn_id: str
    text: str


class EmotionEvent(BaseModel):
    type: Literal["emotion"] = "emotion"
    turn_id: str
    data: dict[str, Any]


class SafetyEvent(BaseModel):
    """The crisis protocol answered this turn (docs/SAFETY.md): sent before its ``response``. ``resources`` are
    the numbers to show (locale, crisis_line, emergency, abuse_line)."""

    type: Literal["safety"] = "safety"
    turn_id: str
    category: str | None
    level: str | None
    flagged: bool = True
    mode: bool = True  # the session stays in safety mode (later replies check in) until the person says they are safe
    resources: dict[str, str | None] | None = None


class ResponseDeltaEvent(BaseModel):
    type: Literal["response.delta"] = "response.delta"
    turn_id: str
    text: str


class ResponseEvent(BaseModel):
    type: Literal["response"] = "response"
    turn_id: str
    text: str


class AudioStartEvent(BaseModel):
    type: Literal["audio.start"] = "audio.start"
    turn_id: str
    sample_rate: int
    format: Literal["pcm_s16le"] = "pcm_s16le"


class AudioEndEvent(BaseModel):
    type: Literal["audio.end"] = "audio.end"
    turn_id: str
    bytes: int
    duration_s: float


class InterruptedEvent(BaseModel):
    type: Literal["interrupted"] = "interrupted"
    turn_id: str
    spoken_text: str  # what the client was actually sent of the reply


class MetricsEvent(BaseModel):
    type: Literal["metrics"] = "metrics"
    turn_id: str
    timings: dict[str, float]  # seconds from end of speech (or text received) to each milestone
    speculative_stt: bool = False  # the transcript came from a transcription started during the hangover
    early_start: bool = False  # the whole turn started at a pause, before the end of speech was confirmed


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    code: str
    message: str
    retryable: bool = False


ServerEvent = (
    SessionEvent
    | StatusEvent
    | SpeechStartedEvent
    | SpeechStoppedEvent
    | TranscriptDeltaEvent
    | TranscriptEvent
    | EmotionEvent
    | ResponseDeltaEvent
    | ResponseEvent
    | AudioStartEvent
    | AudioEndEvent
    | InterruptedEvent
    | MetricsEvent
    | ErrorEvent
)
