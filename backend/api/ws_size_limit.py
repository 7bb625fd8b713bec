"""The WebSocket message cap (``limits.ws_max_message_bytes``) enforced by the app itself, on every WebSocket.

``python -m backend.main`` (backend/server.py) already gives uvicorn the cap, so the WebSocket library closes
an oversized message 1009 before it is even assembled. Started any other way (``uvicorn backend.main:app``,
another ASGI server) the library's own cap applies instead (uvicorn: 16 MiB). This ASGI middleware holds the
limit there too: a message over the cap is never handed to the app; the client gets close 1009 "message too
big" and the app a ``websocket.disconnect`` with code 1009, so the handler ends as on any disconnect. What the
app sends after that goes nowhere (the connection is closed).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLOSE_TOO_BIG = 1009
REASON = "message too big"


def message_size(message: Message) -> int:
    """Bytes of a ``websocket.receive`` message's payload (text counted as UTF-8, as on the wire)."""
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text")
    return len(text.encode()) if text is not None else 0


class WebSocketSizeLimit:
    """Pure ASGI middleware: close 1009 on a WebSocket message over ``max_bytes()`` (read per connection)."""

    def __init__(self, app: ASGIApp, max_bytes: Callable[[], int]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes()
        closed = False

        async def guarded_receive() -> Message:
            nonlocal closed
            if closed:
                return {"type": "websocket.disconnect", "code": CLOSE_TOO_BIG, "reason": REASON}
            message = await receive()
            if message["type"] == "websocket.receive" and message_size(message) > limit:
                closed = True
                await send({"type": "websocket.close", "code": CLOSE_TOO_BIG, "reason": REASON})
                return {"type": "websocket.disconnect", "code": CLOSE_TOO_BIG, "reason": REASON}
            return message

        async def guarded_send(message: Message) -> None:
            if not closed:
                await send(message)

        await self.app(scope, guarded_receive, guarded_send)
