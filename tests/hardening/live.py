"""A real uvicorn on 127.0.0.1 in a thread, for checks the in-process TestClient cannot make (handshake status,
size limits, many sockets), built by ``backend.main.build_server`` like the real server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from websockets.sync.client import ClientConnection, connect

from backend.main import DrainingServer, build_server


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
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port = sock.getsockname()[1]
    # The production server (backend.main.build_server: websockets-sansio, ws_max_size from the settings,
    # no permessage-deflate), with test logging.
    server = build_server(app.state.settings, app, log_level=log_level, backlog=2048)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.01)
    try:
        yield Live("127.0.0.1", port, server)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


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
