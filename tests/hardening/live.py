"""A real uvicorn on 127.0.0.1 in a thread, for checks the in-process TestClient cannot make (handshake status,
size limits, many sockets), built by ``backend.main.build_server`` like the real server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from websockets.sync.client import ClientConnection, connect

from backend.server import DrainingServer
from tests.live_server import LiveServer


@dataclass
class Live:
    host: str
    port: int
    server: DrainingServer

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, query: str = "") -> str:
        return f"ws://{self.host}:{self.port}/ws/voice" + (f"?{query}" if query else "")


@contextmanager
def live_server(app: FastAPI, start_timeout: float = 20.0, log_level: str = "warning") -> Iterator[Live]:
    """Serve ``app`` on a pre-bound ephemeral port until the block ends."""
    with LiveServer(app, startup_timeout_s=start_timeout, log_level=log_level) as server:
        yield Live("127.0.0.1", server.port, server.server)


def ws_connect(url: str, **kwargs: Any) -> ClientConnection:
    conn: ClientConnection = connect(
        url, open_timeout=10, close_timeout=2, max_size=None, compression=None, legacy=True, **kwargs
    )
    return conn


def recv_event(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    """The next JSON event, skipping binary audio."""
    deadline = time.monotonic() + timeout
    while True:
        message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(message, str):
            event: dict[str, Any] = json.loads(message)
            return event


def recv_until(ws: ClientConnection, event_type: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Events up to and including the first of ``event_type``."""
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while True:
        got.append(recv_event(ws, max(0.01, deadline - time.monotonic())))
        if got[-1]["type"] == event_type:
            return got


def text_turn(ws: ClientConnection, text: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Send one text turn and read its events through ``metrics`` (the last event of a turn)."""
    ws.send(json.dumps({"type": "text", "text": text}))
    return recv_until(ws, "metrics", timeout)
