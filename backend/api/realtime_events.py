"""Pipeline events -> OpenAI Realtime server events, keeping the ids of each response.

One conversation turn is one response: ``resp_<turn id>`` with one assistant item ``item_<turn id>_a``; the
user's item is ``item_<turn id>`` (or the id the client gave a text item). A response opens when its turn
starts processing and closes with ``response.done``: completed (TurnDone), cancelled (Interrupted: barge-in
or response.cancel) or failed (an error during the turn). Transcription ``completed`` waits for the emotion
(tens of milliseconds later) so it can carry it; ``response.done`` carries it too, in ``metadata``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.api.realtime_session import OutputEncoder, RealtimeSession
from backend.config import Settings
from backend.pipeline import events as ev
from backend.protocol import realtime as rt

MAX_ITEMS = 256  # items kept for conversation.item.retrieve / truncate


def user_item_id(turn_id: str) -> str:
    return f"item_{turn_id}"


def reply_item_id(turn_id: str) -> str:
    return f"item_{turn_id}_a"


def response_id(turn_id: str) -> str:
    return f"resp_{turn_id}"


@dataclass
class _Response:
    turn_id: str
    speaks: bool
    item_open: bool = False
    audio: OutputEncoder | None = None
    audio_done: bool = False
    transcript: str = ""
    deltas: list[str] = field(default_factory=list)
    input_text: str = ""
    emotion: dict[str, object] | None = None
    safety: dict[str, object] | None = None  # the crisis protocol's reading (pipeline/events.py SafetyChecked)

    @property
    def id(self) -> str:
        return response_id(self.turn_id)

    @property
    def item_id(self) -> str:
        return reply_item_id(self.turn_id)


class ItemLog:
    """The conversation's recent items, for retrieve and truncate; the turn each one belongs to."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[rt.Item, str]] = OrderedDict()
        self.last_id: str | None = None
        self._by_turn: dict[str, str] = {}  # user item id per turn, when the client named it

    def add(self, item: rt.Item, turn_id: str) -> str | None:
        """Store ``item``; returns the id of the item before it."""
        previous, self.last_id = self.last_id, item.id
        self._items[item.id] = (item, turn_id)
        self._items.move_to_end(item.id)
        while len(self._items) > MAX_ITEMS:
            _, (_, old_turn) = self._items.popitem(last=False)
            self._by_turn.pop(old_turn, None)
        if item.role == "user" and item.id != user_item_id(turn_id):
            self._by_turn[turn_id] = item.id
        return previous

    def get(self, item_id: str) -> tuple[rt.Item, str] | None:
        return self._items.get(item_id)

    def user_item_id(self, turn_id: str) -> str:
        return self._by_turn.get(turn_id, user_item_id(turn_id))


class RealtimeMapper:
    """Stateful: call ``map`` with each pipeline event in order; it returns the Realtime events to send."""

    def __init__(self, session: RealtimeSession, settings: Settings, count_tokens: Callable[[str], int]) -> None:
        self.session = session
        self.settings = settings
        self.count_tokens = count_tokens
        self.items = ItemLog()
        self.audio_ms = 0  # input audio appended so far (the receiver adds to it)
        self.cancel_reason = "turn_detected"  # set to client_cancelled before a response.cancel
        self.created = False
        self._responses: dict[str, _Response] = {}
        self._transcripts: dict[str, tuple[str, float]] = {}  # audio turns not transcribed yet: (text, seconds)

    def map(self, event: ev.PipelineEvent) -> list[rt.ServerEvent]:
        match event:
            case ev.SessionReady():
                self.session.mentor_session_id, self.session.resumed = event.session_id, event.resumed
                if self.created:
                    return []
                self.created = True
                return [rt.SessionCreated(session=self.render_session())]
            case ev.SpeechStarted() if self.session.turn_detection is not None:
                start = max(0, self.audio_ms - round(event.ago_s * 1000))  # where the speech began
                return [rt.SpeechStarted(audio_start_ms=start, item_id=user_item_id(event.turn_id))]
            case ev.SpeechStopped():
                return self._speech_stopped(event)
            case ev.StageStarted(stage="processing"):
                return self._open(event.turn_id)
            case ev.StageStarted(stage="generating"):
                return self._open_item(event.turn_id)
            case ev.TranscriptFinal():
                return self._transcript(event)
            case ev.EmotionDetected():
                return self._emotion(event)
            case ev.SafetyChecked():
                if (response := self._responses.get(event.turn_id)) is not None:
                    response.safety = {**event.safety, "resources": event.resources} if event.flagged else event.safety
                return []
            case ev.ReplyTextDelta():
                return self._text_delta(event)
            case ev.ReplyTextDone():
                if (response := self._responses.get(event.turn_id)) is not None:
                    response.transcript = event.text
                return []
            case ev.ReplyAudioStarted():
                if (response := self._responses.get(event.turn_id)) is not None and response.speaks:
                    response.audio = OutputEncoder(self.session.output_codec, event.sample_rate)
                return []
            case ev.ReplyAudioChunk():
                return self._audio(event.turn_id, event.pcm)
            case ev.ReplyAudioDone():
                return self._audio(event.turn_id, None)
            case ev.Interrupted():
                reason, self.cancel_reason = self.cancel_reason, "turn_detected"
                details = {"type": "cancelled", "reason": reason}
                return self._close(event.turn_id, "cancelled", details, event.spoken_text)
            case ev.TurnDone():
                if event.safety is not None and (response := self._responses.get(event.turn_id)) is not None:
                    response.safety = {**(response.safety or {}), **event.safety}
                return self._close(event.turn_id, "completed", None)
            case ev.ErrorOccurred():
                error = rt.Error(error=error_detail(event.code, event.message, server=event.code == "internal_error"))
                failure = {"type": "failed", "error": {"type": error.error.type, "code": event.code}}
                failed = list(self._responses.values())[-1:]
                return [error, *(e for r in failed for e in self._close(r.turn_id, "failed", failure))]
        return []

    def render_session(self) -> dict[str, object]:
        return self.session.render(self.settings, f"sess_{self.session.mentor_session_id}")

    # --- user input -------------------------------------------------------------------------------------

    def add_user_item(self, item: rt.Item, turn_id: str) -> list[rt.ServerEvent]:
        previous = self.items.add(item, turn_id)
        return [rt.ItemAdded(item=item, previous_item_id=previous), rt.ItemDone(item=item, previous_item_id=previous)]

    def _speech_stopped(self, event: ev.SpeechStopped) -> list[rt.ServerEvent]:
        out: list[rt.ServerEvent] = []
        item_id = user_item_id(event.turn_id)
        if self.session.turn_detection is not None and not event.committed:
            end = max(0, self.audio_ms - round(event.silence_s * 1000))  # where the words ended
            out.append(rt.SpeechStopped(audio_end_ms=end, item_id=item_id))
        if event.discarded:
            return out
        self._transcripts[event.turn_id] = ("", event.duration_s)
        item = rt.Item(id=item_id, role="user", content=[rt.ContentPart(type="input_audio")])
        out.append(rt.BufferCommitted(item_id=item_id, previous_item_id=self.items.last_id))
        return out + self.add_user_item(item, event.turn_id)

    def _transcript(self, event: ev.TranscriptFinal) -> list[rt.ServerEvent]:
        if (response := self._responses.get(event.turn_id)) is not None:
            response.input_text = event.text
        if event.turn_id not in self._transcripts:
            return []  # a text turn: its item already holds the text
        self._transcripts[event.turn_id] = (event.text, self._transcripts[event.turn_id][1])
        item_id = self.items.user_item_id(event.turn_id)
        out: list[rt.ServerEvent] = [rt.TranscriptionDelta(item_id=item_id, delta=event.text)]
        if not event.text:  # no emotion follows (the turn ends with no_speech)
            out += self._transcription_completed(event.turn_id, None)
        return out

    def _emotion(self, event: ev.EmotionDetected) -> list[rt.ServerEvent]:
        emotion = event.emotion.to_dict()
        if (response := self._responses.get(event.turn_id)) is not None:
            response.emotion = emotion
        if event.turn_id not in self._transcripts:
            return []
        return self._transcription_completed(event.turn_id, emotion)

    def _transcription_completed(self, turn_id: str, emotion: dict[str, object] | None) -> list[rt.ServerEvent]:
        text, seconds = self._transcripts.pop(turn_id)
        item_id = self.items.user_item_id(turn_id)
        if (stored := self.items.get(item_id)) is not None:
            stored[0].content = [rt.ContentPart(type="input_audio", transcript=text)]
        usage = {"type": "duration", "seconds": seconds}
        return [rt.TranscriptionCompleted(item_id=item_id, transcript=text, usage=usage, emotion=emotion)]

    # --- the response -----------------------------------------------------------------------------------

    def _open(self, turn_id: str) -> list[rt.ServerEvent]:
        if turn_id in self._responses:
            return []
        response = self._responses[turn_id] = _Response(turn_id, speaks=self.session.speaks)
        return [rt.ResponseCreated(response=self._response(response, "in_progress", None))]

    def _open_item(self, turn_id: str) -> list[rt.ServerEvent]:
        response = self._responses.get(turn_id)
        if response is None or response.item_open:
            return []
        response.item_open = True
        item = self._reply_item(response, "in_progress", "")
        previous = self.items.add(item, turn_id)
        part = rt.Part(type="audio", transcript="") if response.speaks else rt.Part(type="text", text="")
        return [
            rt.OutputItemAdded(response_id=response.id, item=item),
            rt.ItemAdded(item=item, previous_item_id=previous),
            rt.ContentPartAdded(response_id=response.id, item_id=response.item_id, part=part),
        ]

    def _text_delta(self, event: ev.ReplyTextDelta) -> list[rt.ServerEvent]:
        response = self._responses.get(event.turn_id)
        if response is None or not response.item_open:
            return []
        response.deltas.append(event.text)
        ids = {"response_id": response.id, "item_id": response.item_id}
        if response.speaks:
            return [rt.AudioTranscriptDelta(**ids, delta=event.text)]
        return [rt.TextDelta(**ids, delta=event.text)]

    def _audio(self, turn_id: str, pcm: bytes | None) -> list[rt.ServerEvent]:
        response = self._responses.get(turn_id)
        if response is None or response.audio is None or response.audio_done:
            return []
        if pcm is None:
            response.audio_done = True
        delta = response.audio.encode(pcm) if pcm is not None else response.audio.flush()
        return [rt.AudioDelta(response_id=response.id, item_id=response.item_id, delta=delta)] if delta else []

    def _close(
        self, turn_id: str, status: str, details: dict[str, Any] | None, spoken: str | None = None
    ) -> list[rt.ServerEvent]:
        response = self._responses.pop(turn_id, None)
        if response is None:
            return []
        out: list[rt.ServerEvent] = []
        if spoken is not None:
            response.transcript = spoken
        elif not response.transcript:
            response.transcript = "".join(response.deltas).strip()
        if response.item_open:
            ids = {"response_id": response.id, "item_id": response.item_id}
            item_status = "completed" if status == "completed" else "incomplete"
            item = self._reply_item(response, item_status, response.transcript)
            self.items.add(item, turn_id)
            if response.speaks:
                if response.audio is not None:
                    out.append(rt.AudioDone(**ids))
                out.append(rt.AudioTranscriptDone(**ids, transcript=response.transcript))
                part = rt.Part(type="audio", transcript=response.transcript)
            else:
                out.append(rt.TextDone(**ids, text=response.transcript))
                part = rt.Part(type="text", text=response.transcript)
            out.append(rt.ContentPartDone(**ids, part=part))
            out.append(rt.OutputItemDone(response_id=response.id, item=item))
            out.append(rt.ItemDone(item=item))
        out.append(rt.ResponseDone(response=self._response(response, status, details)))
        return out

    def _reply_item(self, response: _Response, status: str, transcript: str) -> rt.Item:
        part = (
            rt.ContentPart(type="output_audio", transcript=transcript)
            if response.speaks
            else rt.ContentPart(type="output_text", text=transcript)
        )
        return rt.Item(id=response.item_id, role="assistant", status=status, content=[part])

    def _response(self, response: _Response, status: str, details: dict[str, Any] | None) -> rt.Response:
        done = status != "in_progress"
        usage = None
        if done:
            input_tokens = self.count_tokens(response.input_text) if response.input_text else 0
            output_tokens = self.count_tokens(response.transcript) if response.transcript else 0
            usage = {
                "total_tokens": input_tokens + output_tokens,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0, "cached_tokens": 0},
                "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0},
            }
        metadata: dict[str, str] | None = None
        if response.emotion is not None:
            label, confidence = response.emotion.get("label"), response.emotion.get("confidence")
            metadata = {"emotion": str(label), "emotion_confidence": str(confidence)}
        if done:  # Realtime metadata values are strings: the safety object as JSON
            safety = response.safety or {"flagged": False, "category": None, "level": None}
            metadata = (metadata or {}) | {"safety": json.dumps(safety, separators=(",", ":"))}
        item_status = "completed" if status == "completed" else "incomplete"
        output = [self._reply_item(response, item_status, response.transcript)] if done and response.item_open else []
        return rt.Response(
            id=response.id,
            status=status,
            status_details=details,
            output=output,
            output_modalities=list(self.session.output_modalities),
            usage=usage,
            metadata=metadata,
        )


def error_detail(code: str, message: str, *, event_id: str | None = None, server: bool = False) -> rt.ErrorDetail:
    return rt.ErrorDetail(
        type="server_error" if server else "invalid_request_error", code=code, message=message, event_id=event_id
    )
