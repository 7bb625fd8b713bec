"""/v1/realtime: the OpenAI Realtime API (GA events) over the same Conversation as /ws/voice.

Admission, limits and the connection's lifetime are ws_lifecycle's (origin, auth incl. ``Authorization: Bearer``,
drain, capacity, idle timeout, byte rate, send deadlines). Client events are parsed here and become Conversation
calls; pipeline events are mapped by realtime_events.py. Events the handler answers itself (session.updated,
cleared, items the client created, truncated, retrieved, errors with the client's ``event_id``) go through a
small queue that the sender serves first. ``?session_id=`` resumes a stored session. See docs/REALTIME.md.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import deque

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError

from backend.api.deps import AppServices
from backend.api.limits import InputGuard
from backend.api.realtime_events import RealtimeMapper, error_detail, user_item_id
from backend.api.realtime_session import RealtimeSession
from backend.api.ws_lifecycle import MAX_JSON_DEPTH, admit, close_with, json_depth_exceeded, serve
from backend.core.exceptions import ClarityError, InvalidInputError, InvalidJSONError, UnknownEventError
from backend.pipeline.conversation import Conversation
from backend.pipeline.events import PipelineEvent
from backend.pipeline.output_queue import OutputQueue, SlowClientError
from backend.pipeline.session_binding import SessionContext, new_id
from backend.protocol import realtime as rt
from backend.protocol.v1 import SESSION_ID_PATTERN

router = APIRouter()
SUBPROTOCOL = "realtime"
DEFAULT_MODEL = "claritymentor"
RATE_SCALE = 2.0  # base64 PCM16 at 24 kHz is 2x the bytes of raw 16 kHz PCM16 per second of audio
MAX_EDGE_EVENTS = 256  # events the handler itself queued and the client has not read yet


def event_id() -> str:
    return f"event_{uuid.uuid4().hex[:20]}"


def render_error(exc: ClarityError, client_event_id: str | None = None) -> str:
    """A ClarityError as a Realtime ``error`` event (JSON text)."""
    detail = error_detail(exc.code, exc.message, event_id=client_event_id, server=exc.http_status >= 500)
    return rt.Error(event_id=event_id(), error=detail).model_dump_json()


def load_event(text: str) -> dict[str, object]:
    """A client text frame as a JSON object, or InvalidJSONError."""
    if json_depth_exceeded(text):
        raise InvalidJSONError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise InvalidJSONError("client events are JSON objects") from None
    if not isinstance(raw, dict):
        raise InvalidJSONError("a client event must be a JSON object with a 'type'")
    return raw


def validate_event(raw: dict[str, object]) -> rt.ClientEvent:
    """A JSON object as a typed client event, or a ClarityError with a stable code."""
    kind = raw.get("type")
    shown = kind[:60] if isinstance(kind, str) else type(kind).__name__
    if kind in rt.UNSUPPORTED_EVENT_TYPES:
        raise InvalidInputError(f"{shown} is not supported by this server", code="unsupported_event")
    if kind not in rt.CLIENT_EVENT_TYPES:
        raise UnknownEventError(f"unknown event type {shown!r}")
    try:
        return rt.client_event_adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "event"
        raise InvalidInputError(f"invalid '{kind}' event: {where}: {first['msg']}", code="invalid_value") from None


class RealtimeConnection:
    def __init__(self, ws: WebSocket, services: AppServices, conversation: Conversation, session: RealtimeSession):
        self.ws = ws
        self.services = services
        self.settings = services.settings
        self.conversation = conversation
        self.session = session
        self.mapper = RealtimeMapper(session, services.settings, services.models.llm.count_tokens)
        self._edge: deque[rt.ServerEvent] = deque()
        self._edge_ready = asyncio.Event()

    def send(self, *events: rt.ServerEvent) -> None:
        """Queue events the handler answers itself; they go out before pipeline events still waiting."""
        if len(self._edge) + len(events) > MAX_EDGE_EVENTS:
            raise SlowClientError("the client is not reading its events")
        self._edge.extend(events)
        self._edge_ready.set()

    # --- sender -----------------------------------------------------------------------------------------

    async def _next(self, out: OutputQueue) -> rt.ServerEvent | PipelineEvent | None:
        while not self._edge:
            self._edge_ready.clear()
            getter = asyncio.ensure_future(out.get())
            waiter = asyncio.ensure_future(self._edge_ready.wait())
            try:
                await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                return getter.result()
        return self._edge.popleft()

    async def sender(self, out: OutputQueue) -> None:
        timeout = self.settings.limits.send_timeout_s
        while True:
            item = await self._next(out)
            if item is None:
                return
            if isinstance(item, rt.ServerEvent):
                messages = [item]
            else:
                self.conversation.mark_sending(item)
                messages = self.mapper.map(item)
            for message in messages:
                message.event_id = event_id()
                try:
                    await asyncio.wait_for(self.ws.send_text(message.model_dump_json()), timeout)
                except TimeoutError:
                    raise SlowClientError("the client stopped reading") from None

    # --- receiver ---------------------------------------------------------------------------------------

    async def receiver(self, guard: InputGuard) -> None:
        while True:
            message = await guard.receive(self.ws)
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            client_event_id: str | None = None
            try:
                if text is None:
                    raise InvalidInputError("send JSON text events; audio goes in input_audio_buffer.append")
                raw = load_event(text)
                if isinstance(raw.get("event_id"), str):
                    client_event_id = str(raw["event_id"])[:64]
                await self.dispatch(validate_event(raw))
            except SlowClientError:
                raise
            except ClarityError as exc:
                self.services.metrics.errors.labels(code=exc.code).inc()
                detail = error_detail(exc.code, exc.message, event_id=client_event_id, server=exc.http_status >= 500)
                self.send(rt.Error(error=detail))

    async def dispatch(self, event: rt.ClientEvent) -> None:
        conversation, session = self.conversation, self.session
        match event:
            case rt.InputAudioBufferAppend():
                await self._append(event.audio)
            case rt.SessionUpdate():
                session.apply(event.session)
                persona = self.services.shared.personas.from_instructions(event.session.instructions)
                if persona is not None:  # instructions naming a persona choose it; other text keeps the session's
                    await conversation.set_persona(persona.id)
                conversation.configure(session.turn_taking())
                if session.input_codec.rate != conversation.input_rate:
                    await conversation.start_session(None, session.input_codec.rate)
                self.send(rt.SessionUpdated(session=self.mapper.render_session()))
            case rt.InputAudioBufferCommit():
                try:
                    await conversation.commit()
                except InvalidInputError as exc:
                    if exc.code != "no_audio":
                        raise
                    raise InvalidInputError(
                        "the input audio buffer is empty", code="input_audio_buffer_commit_empty"
                    ) from None
            case rt.InputAudioBufferClear():
                conversation.clear_input()
                self.send(rt.BufferCleared())
            case rt.ConversationItemCreate():
                await self._create_item(event.item)
            case rt.ConversationItemTruncate():
                await self._truncate(event)
            case rt.ConversationItemRetrieve():
                found = self.mapper.items.get(event.item_id)
                if found is None:
                    raise InvalidInputError(f"no item {event.item_id[:64]!r}", code="item_not_found")
                self.send(rt.ItemRetrieved(item=found[0]))
            case rt.ResponseCreate():
                params = event.response
                if params is not None and (params.conversation == "none" or params.input):
                    raise InvalidInputError("out-of-band responses are not supported", code="unsupported_value")
                if conversation.busy:
                    raise InvalidInputError(
                        "a response is already in progress", code="conversation_already_has_active_response"
                    )
                await conversation.respond()
            case rt.ResponseCancel():
                self.mapper.cancel_reason = "client_cancelled"
                if not await conversation.interrupt():
                    self.mapper.cancel_reason = "turn_detected"
                    raise InvalidInputError("there is no response to cancel", code="response_cancel_not_active")

    async def _append(self, audio_b64: str) -> None:
        codec = self.session.input_codec
        pcm = codec.decode(audio_b64)
        if len(pcm) % 2:
            raise InvalidInputError("audio/pcm is 16-bit: an odd number of bytes", code="invalid_audio")
        seconds = len(pcm) / 2 / codec.rate
        limit = self.settings.limits.max_append_s
        if seconds > limit:
            raise InvalidInputError(
                f"one append carries {seconds:.2f} s of audio; at most {limit:g} s", code="audio_too_large"
            )
        self.mapper.audio_ms += round(seconds * 1000)
        await self.conversation.on_audio(pcm)

    async def _create_item(self, item: rt.NewItem) -> None:
        if item.type != "message" or item.role != "user":
            raise InvalidInputError("only user messages can be added to the conversation", code="unsupported_value")
        if any(part.type not in ("input_text", "text") for part in item.content):
            raise InvalidInputError("user messages may hold input_text only", code="unsupported_value")
        text = "\n".join(part.text for part in item.content if part.text).strip()
        if not text:
            raise InvalidInputError("the message has no text", code="invalid_value")
        if item.id is not None and self.mapper.items.get(item.id) is not None:
            raise InvalidInputError(f"an item {item.id!r} already exists", code="item_id_exists")
        turn_id = await self.conversation.add_text(text, hold=True)
        added = rt.Item(
            id=item.id or user_item_id(turn_id), role="user", content=[rt.ContentPart(type="input_text", text=text)]
        )
        self.send(*self.mapper.add_user_item(added, turn_id))

    async def _truncate(self, event: rt.ConversationItemTruncate) -> None:
        found = self.mapper.items.get(event.item_id)
        if found is None or found[0].role != "assistant":
            raise InvalidInputError(f"no assistant item {event.item_id[:64]!r}", code="item_not_found")
        item, turn_id = found
        self.mapper.cancel_reason = "client_cancelled"  # truncating a reply still running stops it
        heard = await self.conversation.truncate(turn_id, event.audio_end_ms / 1000)
        self.mapper.cancel_reason = "turn_detected"
        item.status = "incomplete"
        item.content = [rt.ContentPart(type="output_audio", transcript=heard)]
        self.send(rt.ItemTruncated(item_id=item.id, content_index=event.content_index, audio_end_ms=event.audio_end_ms))


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    services: AppServices = ws.app.state.services
    settings = services.settings
    offered = ws.scope.get("subprotocols") or []
    admitted = await admit(ws, services, render_error, subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    if admitted is None:
        return
    out = OutputQueue(settings.pipeline.output_queue_max)
    session = RealtimeSession(model=ws.query_params.get("model") or DEFAULT_MODEL)
    conversation = Conversation(
        pipeline=services.pipeline,
        store=services.store,
        settings=settings,
        out=out,
        session=SessionContext(new_id(), owner=admitted.owner),
        output_sample_rate=services.models.tts.sample_rate,
    )
    conversation.configure(session.turn_taking())
    connection = RealtimeConnection(ws, services, conversation, session)
    resume = ws.query_params.get("session_id")
    try:
        if resume is not None and not re.fullmatch(SESSION_ID_PATTERN, resume):
            raise InvalidInputError("session_id must be 1-64 letters, digits, '_' or '-'", code="invalid_value")
        locale = ws.query_params.get("safety_locale")  # whose crisis numbers (docs/SAFETY.md)
        if locale is not None and not re.fullmatch(r"[A-Za-z_-]{2,16}", locale):
            raise InvalidInputError("safety_locale must be 2-16 letters, '_' or '-'", code="invalid_value")
        await conversation.start_session(resume, session.input_codec.rate, safety_locale=locale)
    except ClarityError as exc:  # an unknown or foreign session: say so, then close
        await close_with(ws, 1008, exc.code, render_error(exc), settings.limits.send_timeout_s)
        return
    ready = await out.get()  # the SessionReady just emitted: session.created goes out first
    assert ready is not None
    connection.send(*connection.mapper.map(ready))
    conversation.start()
    guard = InputGuard(settings.limits, lambda: conversation.busy, rate_scale=RATE_SCALE)
    await serve(
        ws,
        services,
        conversation,
        out,
        sender=connection.sender(out),
        receiver=connection.receiver(guard),
        render_error=render_error,
    )
