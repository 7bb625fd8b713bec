"""What every WebSocket wire shares: who gets in, how a connection ends, and the release of its conversation.

- ``admit``: the Origin check and auth before the handshake completes (a refusal is HTTP 403), then the drain
  and connection-cap refusals (accepted, then closed with the wire's error event and a close code).
- ``serve``: runs the wire's sender and receiver, maps whichever ends first to a close code (limits.py), and
  releases the conversation in a shielded cleanup (so a partial turn is stored even at server shutdown).
- ``close_with``: the error event (if any) and the close frame within a deadline.
- ``json_depth_exceeded``: refuse deeply nested JSON before parsing it.

Each wire passes ``render_error``, which renders a ClarityError as that wire's error event (JSON text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket
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
)
from backend.core.exceptions import ClarityError
from backend.pipeline.conversation import Conversation
from backend.pipeline.output_queue import OutputQueue, SlowClientError

logger = logging.getLogger(__name__)
_cleanups: set[asyncio.Future[None]] = set()  # strong references while a closed connection is released

RenderError = Callable[[ClarityError], str]
MAX_JSON_DEPTH = 32  # control events are shallow; deeper nesting is refused before parsing


def json_depth_exceeded(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
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


@dataclass(frozen=True)
class Admitted:
    owner: str | None  # the API key's fingerprint; None when auth is off


def _refusal(ws: WebSocket, services: AppServices) -> ConnectionClosing | None:
    if getattr(ws.app.state, "draining", False):
        return DrainingError("the server is restarting; reconnect shortly")
    if len(services.connections) >= services.settings.limits.max_connections:
        return AtCapacityError(
            f"the server is at its limit of {services.settings.limits.max_connections} connections; try again shortly"
        )
    return None


async def admit(
    ws: WebSocket, services: AppServices, render_error: RenderError, *, subprotocol: str | None = None
) -> Admitted | None:
    """Check and accept the connection (with ``subprotocol`` when the client offered it); None if refused."""
    settings = services.settings
    try:
        check_origin(ws, settings.auth)
        owner = authenticate(ws, settings.auth)
    except ClarityError as exc:
        services.metrics.errors.labels(code=exc.code).inc()
        await ws.close(code=1008, reason=exc.message[:120])  # before accept: the handshake gets HTTP 403
        return None
    refusal = _refusal(ws, services)
    await ws.accept(subprotocol=subprotocol)
    if refusal is not None:
        services.metrics.errors.labels(code=refusal.code).inc()
        # Accepted then closed: browsers see the close code, never an HTTP status.
        text = render_error(refusal)
        await close_with(ws, refusal.close_code, refusal.close_reason, text, settings.limits.send_timeout_s)
        return None
    return Admitted(owner)


async def close_with(ws: WebSocket, code: int, reason: str, error_text: str | None, deadline: float) -> None:
    """Send the error event (if any) and the close frame within ``deadline``; a peer that does not read
    cannot hold the handler (the protocol aborts its transport)."""
    if ws.application_state != WebSocketState.CONNECTED or ws.client_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(deadline):
            if error_text is not None:
                await ws.send_text(error_text)
            await ws.close(code, reason)


async def serve(
    ws: WebSocket,
    services: AppServices,
    conversation: Conversation,
    out: OutputQueue,
    *,
    sender: Coroutine[Any, Any, None],
    receiver: Coroutine[Any, Any, None],
    render_error: RenderError,
) -> None:
    """Run one accepted connection until its sender or receiver ends, then close it and release everything."""
    settings = services.settings
    services.connections.add(conversation)
    services.metrics.connections.inc()
    sending = asyncio.create_task(sender)
    receiving = asyncio.create_task(receiver)
    close_code, reason, error = CLOSE_NORMAL, "", None
    try:
        done, _ = await asyncio.wait({sending, receiving}, return_when=asyncio.FIRST_COMPLETED)
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
        receiving.cancel()
        sending.cancel()

        async def release() -> None:
            await asyncio.gather(sending, receiving, return_exceptions=True)
            try:
                await conversation.close()  # stores the partial reply and any unanswered speech
            finally:
                out.close()
                services.connections.discard(conversation)
                services.metrics.connections.dec()
                error_text = render_error(error) if error is not None else None
                await close_with(ws, close_code, reason, error_text, settings.limits.send_timeout_s)

        # Shielded: even if this handler is cancelled (server shutdown), the partial turn is still stored.
        cleanup = asyncio.ensure_future(release())
        _cleanups.add(cleanup)
        cleanup.add_done_callback(_cleanups.discard)
        await asyncio.shield(cleanup)
