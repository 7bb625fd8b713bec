"""Server -> client WebSocket events (protocol v1) and REST response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

PROTOCOL_VERSION = "1"


# --- WebSocket events -----------------------------------------------------------------------------------


class SessionEvent(BaseModel):
    type: Literal["session"] = "session"
    session_id: str
    protocol: str = PROTOCOL_VERSION
    input_sample_rate: int
    output_sample_rate: int
    output_format: Literal["pcm_s16le"] = "pcm_s16le"
    resumed: bool = False
    mode: Literal["streaming", "sequential"] = "streaming"


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


class TranscriptEvent(BaseModel):
    type: Literal["transcript"] = "transcript"
    turn_id: str
    text: str


class EmotionEvent(BaseModel):
    type: Literal["emotion"] = "emotion"
    turn_id: str
    data: dict[str, Any]


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


# --- REST -----------------------------------------------------------------------------------------------


class ModelStatusPublic(BaseModel):
    state: Literal["pending", "loading", "loaded", "failed"]
    load_seconds: float | None = None
    detail: str | None = None


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "starting"]
    models_loaded: bool
    models: dict[str, ModelStatusPublic]
    timestamp: datetime
    device: str | None = None
    active_connections: int = 0


class SessionPublic(BaseModel):
    id: str
    created_at: datetime
    updated_at: datetime
    turn_count: int = 0
    title: str | None = None


class SessionsPublic(BaseModel):
    sessions: list[SessionPublic]


class TurnPublic(BaseModel):
    id: int
    role: Literal["user", "assistant"]
    text: str
    emotion: dict[str, Any] | None = None
    timings: dict[str, float] | None = None
    duration_s: float | None = None
    interrupted: bool = False
    created_at: datetime


class HistoryPublic(BaseModel):
    session_id: str
    turns: list[TurnPublic]


class TextChatPublic(BaseModel):
    session_id: str
    response: str
    emotion: dict[str, Any]
    timings: dict[str, float] = Field(default_factory=dict)


class ErrorPublic(BaseModel):
    error: ErrorEvent
