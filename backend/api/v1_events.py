"""Protocol v1 at the edge: pipeline events -> /ws/voice messages (and the SSE text chat's named events).

The only place besides backend/protocol/v1.py that knows v1's names. The wire stays what the seed product
sent: a status line per stage, then transcript, emotion, response, audio, metrics.
"""

from __future__ import annotations

from pydantic import BaseModel

from backend.pipeline import events as ev
from backend.protocol.v1 import (
    AudioEndEvent,
    AudioStartEvent,
    EmotionEvent,
    ErrorEvent,
    InterruptedEvent,
    MetricsEvent,
    ResponseDeltaEvent,
    ResponseEvent,
    SafetyEvent,
    SessionEvent,
    SpeechStartedEvent,
    SpeechStoppedEvent,
    StatusEvent,
    TranscriptDeltaEvent,
    TranscriptEvent,
)

STATUS_MESSAGES: dict[ev.Stage, str] = {
    "processing": "Processing...",
    "transcribing": "Transcribing...",
    "detecting_emotion": "Detecting emotion...",
    "generating": "Generating response...",
    "synthesizing": "Synthesizing speech...",
}


# The text chat's server-sent events: its session and done frames around the v1 events of a text turn.
SSE_EVENTS = [
    "session",
    "status",
    "transcript",
    "emotion",
    "safety",
    "response.delta",
    "response",
    "metrics",
    "interrupted",
    "error",
    "done",
]


def to_v1(event: ev.PipelineEvent) -> BaseModel | bytes | None:
    """The v1 message for ``event``: a JSON event, binary audio, or None when v1 has no such message."""
    match event:
        case ev.ReplyAudioChunk():
            return event.pcm
        case ev.SessionReady():
            return SessionEvent(
                session_id=event.session_id,
                input_sample_rate=event.input_sample_rate,
                output_sample_rate=event.output_sample_rate,
                resumed=event.resumed,
                mode=event.mode,
                persona=event.persona,
            )
        case ev.SpeechStarted():
            return SpeechStartedEvent(turn_id=event.turn_id)
        case ev.SpeechStopped():
            return SpeechStoppedEvent(turn_id=event.turn_id, duration_s=event.duration_s, discarded=event.discarded)
        case ev.StageStarted():
            return StatusEvent(message=STATUS_MESSAGES[event.stage])
        case ev.TranscriptFinal():
            return TranscriptEvent(turn_id=event.turn_id, text=event.text)
        case ev.EmotionDetected():
            return EmotionEvent(turn_id=event.turn_id, data=event.emotion.to_dict())
        case ev.SafetyChecked():
            if not event.flagged:  # sent only when the protocol answers (the text chat's done carries every one)
                return None
            return SafetyEvent(
                turn_id=event.turn_id,
                category=_str_or_none(event.safety.get("category")),
                level=_str_or_none(event.safety.get("level")),
                mode=bool(event.safety.get("mode", True)),
                resources=event.resources,
            )
        case ev.ReplyTextDelta():
            return ResponseDeltaEvent(turn_id=event.turn_id, text=event.text)
        case ev.ReplyTextDone():
            return ResponseEvent(turn_id=event.turn_id, text=event.text)
        case ev.ReplyAudioStarted():
            return AudioStartEvent(turn_id=event.turn_id, sample_rate=event.sample_rate)
        case ev.ReplyAudioDone():
            return AudioEndEvent(turn_id=event.turn_id, bytes=event.bytes, duration_s=event.duration_s)
        case ev.Interrupted():
            return InterruptedEvent(turn_id=event.turn_id, spoken_text=event.spoken_text)
        case ev.TurnDone():
            return MetricsEvent(
                turn_id=event.turn_id,
                timings=event.timings,
                speculative_stt=event.speculative_stt,
                early_start=event.early_start,
            )
        case ev.ErrorOccurred():
            return ErrorEvent(code=event.code, message=event.message, retryable=event.retryable)
        case ev.TranscriptPartial():
            return TranscriptDeltaEvent(turn_id=event.turn_id, text=event.text)
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def to_sse(event: ev.PipelineEvent) -> tuple[str, dict[str, object]] | None:
    """The text chat's server-sent event for ``event``: (name, data), v1's event as data; None for audio."""
    message = to_v1(event)
    if message is None or isinstance(message, bytes):
        return None
    data = message.model_dump()
    return str(data.get("type", "message")), data
