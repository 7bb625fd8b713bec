"""/ws/voice: thin. Validates client events, feeds the Conversation, and sends its events with deadlines.

Limits (see backend/api/limits.py for the close codes): a connection cap, an idle timeout, an input byte
rate, a deadline on every send and on the close itself. A client that stops reading is dropped within
``send_timeout_s`` and its transport aborted by the server protocol (backend/main.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from backend.api.auth import authenticate, check_origin
from backend.api.deps import AppServices
from backend.api.limits import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    AtCapacityError,
    ConnectionClosing,
    DrainingError,
    InputGuard,
)
from backend.api.v1_events import to_v1
from backend.core.exceptions import ClarityError, InvalidInputError, InvalidJSONError, UnknownEventError
from backend.pipeline.conversation import Conversation, SessionContext, new_id
from backend.pipeline.output_queue import OutputQueue, SlowClientError
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
_cleanups: set[asyncio.Future[None]] = set()  # strong references while a closed connection is released


MAX_JSON_DEPTH = 32  # control events are flat; deeper nesting is refused before parsing


def _nested_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if brackets outside strings nest deeper than ``limit`` (so parsing never depends on stack depth)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def parse_client_event(text: str) -> ClientEvent:
    """A client JSON text frame -> typed event, or a ClarityError with a stable code."""
    if _nested_too_deep(text):
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
            await conversation.start_session(event.session_id, event.sample_rate)
        case InputCommit():
            await conversation.commit()
        case ResponseCancel():
            await conversation.cancel()
        case TextInput():
            await conversation.add_text(event.text)


def _refusal(ws: WebSocket, services: AppServices) -> ConnectionClosing | None:
    if getattr(ws.app.state, "draining", False):
        return DrainingError("the server is restarting; reconnect shortly")
    if len(services.connections) >= services.settings.limits.max_connections:
        return AtCapacityError(
            f"the server is at its limit of {services.settings.limits.max_connections} connections; try again shortly"
        )
    return None


async def _close(ws: WebSocket, code: int, reason: str, error: ClarityError | None, deadline: float) -> None:
    """Send the error event (if any) and the close frame within ``deadline``; a peer that does not read
    cannot hold the handler (the protocol aborts its transport)."""
    if ws.application_state != WebSocketState.CONNECTED or ws.client_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(deadline):
            if error is not None:
                event = ErrorEvent(code=error.code, message=error.message, retryable=error.retryable)
                await ws.send_text(event.model_dump_json())
            await ws.close(code, reason)


@router.websocket("/ws/voice")
async def voice(ws: WebSocket) -> None:
    services: AppServices = ws.app.state.services
    settings = services.settings
    try:
        check_origin(ws, settings.auth)
        owner = authenticate(ws, settings.auth)
    except ClarityError as exc:
        services.metrics.errors.labels(code=exc.code).inc()
        await ws.close(code=1008, reason=exc.message[:120])  # before accept: the handshake gets HTTP 403
        return
    refusal = _refusal(ws, services)
    if refusal is not None:
        services.metrics.errors.labels(code=refusal.code).inc()
        await ws.accept()  # accepted then closed: browsers see the close code, never an HTTP status
        await _close(ws, refusal.close_code, refusal.close_reason, refusal, settings.limits.send_timeout_s)
        return
    await ws.accept()
    out = OutputQueue(settings.pipeline.output_queue_max)
    conversation = Conversation(
        pipeline=services.pipeline,
        store=services.store,
        settings=settings,
        out=out,
        session=SessionContext(new_id(), owner=owner),
        output_sample_rate=services.models.tts.sample_rate,
    )
    services.connections.add(conversation)
    services.metrics.connections.inc()
    conversation.start()
    out.put_nowait(conversation.session_ready())
    guard = InputGuard(settings.limits, lambda: conversation.busy)
    sender = asyncio.create_task(_sender(ws, out, conversation, settings.limits.send_timeout_s))
    receiver = asyncio.create_task(_receiver(ws, conversation, guard))
    close_code, reason, error = CLOSE_NORMAL, "", None
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception()
            if isinstance(failure, ConnectionClosing):
                close_code, reason, error = failure.close_code, failure.close_reason, failure
                services.metrics.errors.labels(code=failure.code).inc()
                logger.info("closing a connection", extra={"code": failure.code})
            elif isinstance(failure, SlowClientError):
                close_code, reason = CLOSE_POLICY, "client not reading"
                services.metrics.errors.labels(code=failure.code).inc()
                logger.warning("dropping a client that stopped reading")
            elif failure is not None and not isinstance(failure, WebSocketDisconnect):
                close_code, reason = CLOSE_INTERNAL, "internal error"
                logger.error("connection failed", exc_info=failure)
    finally:
        receiver.cancel()
        sender.cancel()

        async def release() -> None:
            await asyncio.gather(sender, receiver, return_exceptions=True)
            try:
                await conversation.close()  # stores the partial reply and any unanswered speech
            finally:
                out.close()
                services.connections.discard(conversation)
                services.metrics.connections.dec()
                await _close(ws, close_code, reason, error, settings.limits.send_timeout_s)

        # Shielded: even if this handler is cancelled (server shutdown), the partial turn is still stored.
        cleanup = asyncio.ensure_future(release())
        _cleanups.add(cleanup)
        cleanup.add_done_callback(_cleanups.discard)
        await asyncio.shield(cleanup)
