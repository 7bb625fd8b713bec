"""/ws/voice: thin. Validates client events, feeds the Conversation, and sends its events with deadlines.

Limits (see backend/api/limits.py for the close codes): a connection cap, an idle timeout, an input byte
rate, a deadline on every send and on the close itself. A client that stops reading is dropped within
``send_timeout_s`` and its transport aborted by the server protocol (backend/main.py).
"""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError

from backend.api.deps import AppServices
from backend.api.limits import InputGuard
from backend.api.v1_events import to_v1
from backend.api.ws_lifecycle import MAX_JSON_DEPTH, admit, json_depth_exceeded, serve
from backend.core.exceptions import ClarityError, InvalidInputError, InvalidJSONError, UnknownEventError
from backend.pipeline.conversation import Conversation
from backend.pipeline.output_queue import OutputQueue, SlowClientError
from backend.pipeline.session_binding import SessionContext, new_id
from backend.protocol.v1 import (
    CLIENT_EVENT_TYPES,
    ClientEvent,
    ErrorEvent,
    InputCommit,
    ResponseCancel,
    SessionStart,
    TextInput,
    client_event_adapter,
)

logger = logging.getLogger(__name__)
router = APIRouter()


def parse_client_event(text: str) -> ClientEvent:
    """A client JSON text frame -> typed event, or a ClarityError with a stable code."""
    if json_depth_exceeded(text):
        raise InvalidJSONError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise InvalidJSONError("text frames must be JSON objects; audio goes in binary frames") from None
    if not isinstance(raw, dict):
        raise InvalidJSONError("a client event must be a JSON object with a 'type'")
    event_type = raw.get("type")
    if event_type not in CLIENT_EVENT_TYPES:
        shown = event_type if isinstance(event_type, str) else type(event_type).__name__
        raise UnknownEventError(f"unknown event type {shown[:40]!r}; expected one of {', '.join(CLIENT_EVENT_TYPES)}")
    try:
        return client_event_adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "event"
        raise InvalidInputError(f"invalid '{event_type}' event: {where}: {first['msg']}") from None


async def _sender(ws: WebSocket, out: OutputQueue, conversation: Conversation, timeout: float) -> None:
    """Forward queued events and audio; each send has a deadline so a client that stops reading is dropped."""
    while True:
        item = await out.get()
        if item is None:
            return
        conversation.mark_sending(item)
        message = to_v1(item)
        if message is None:
            continue
        coro = ws.send_bytes(message) if isinstance(message, bytes) else ws.send_text(message.model_dump_json())
        try:
            await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise SlowClientError("the client stopped reading") from None


async def _receiver(ws: WebSocket, conversation: Conversation, guard: InputGuard) -> None:
    while True:
        message = await guard.receive(ws)
        if message["type"] == "websocket.disconnect":
            return
        try:
            if message.get("bytes") is not None:
                await conversation.on_audio(message["bytes"])
            elif message.get("text") is not None:
                await dispatch(conversation, parse_client_event(message["text"]))
        except SlowClientError:
            raise
        except ClarityError as exc:
            conversation.report_error(exc)


async def dispatch(conversation: Conversation, event: ClientEvent) -> None:
    """A v1 client event -> the conversation's call."""
    match event:
        case SessionStart():
            await conversation.start_session(
                event.session_id,
                event.sample_rate,
                persona=event.mentor,
                user_id=event.user_id,
                safety_locale=event.safety_locale,
            )
        case InputCommit():
            await conversation.commit()
        case ResponseCancel():
            await conversation.cancel()
        case TextInput():
            await conversation.add_text(event.text)


def render_error(exc: ClarityError) -> str:
    """A ClarityError as v1's error event."""
    return ErrorEvent(code=exc.code, message=exc.message, retryable=exc.retryable).model_dump_json()


@router.websocket("/ws/voice")
async def voice(ws: WebSocket) -> None:
    services: AppServices = ws.app.state.services
    settings = services.settings
    admitted = await admit(ws, services, render_error)
    if admitted is None:
        return
    out = OutputQueue(settings.pipeline.output_queue_max)
    conversation = Conversation(
        pipeline=services.pipeline,
        store=services.store,
        settings=settings,
        out=out,
        session=SessionContext(new_id(), owner=admitted.owner),
        output_sample_rate=services.models.tts.sample_rate,
    )
    conversation.start()
    out.put_nowait(conversation.session_ready())
    guard = InputGuard(settings.limits, lambda: conversation.busy)
    await serve(
        ws,
        services,
        conversation,
        out,
        sender=_sender(ws, out, conversation, settings.limits.send_timeout_s),
        receiver=_receiver(ws, conversation, guard),
        render_error=render_error,
    )
