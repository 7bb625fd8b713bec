"""A real uvicorn serving an app on 127.0.0.1 in a background thread (socket pre-bound to port 0: no races)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

from fastapi import FastAPI

from backend.server import build_server


class LiveServer:
    def __init__(
        self,
        app: FastAPI,
        *,
        startup_timeout_s: float = 300.0,
        backlog: int = 2048,
        **overrides: Any,
    ) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(backlog)
        self.port: int = self._sock.getsockname()[1]
        # The same server the product runs (limits, drain, stall abort), quieter logs.
        options: dict[str, Any] = {"log_level": "warning", "backlog": backlog, **overrides}
        self.server = build_server(app.state.settings, app, **options)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._startup_timeout_s = startup_timeout_s

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/voice"

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread exited during startup")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
            self._thread.join(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self._sock.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
