"""The server process: uvicorn with this app's protocol settings, and a drain on SIGTERM.

``python -m backend.main`` and the hardening tests run the app through the same ``build_server``: uvicorn with
the sans-I/O websockets protocol, messages capped at ``limits.ws_max_message_bytes`` (bigger ones close 1009),
no permessage-deflate, a transport abort for peers that stop reading, and a drain on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from backend.api.deps import AppServices
from backend.config import Settings

logger = logging.getLogger(__name__)


class StallAbortingProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, plus a deadline on a stalled peer.

    asyncio pauses writing when a peer stops reading (its TCP window is full); closing such a transport waits
    for the buffer to flush, which never happens, so the connection (and a graceful shutdown waiting for it)
    would hang forever. If writing stays paused for ``stall_abort_s`` the transport is aborted instead.
    """

    stall_abort_s = 10.0
    _stall_timer: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.stall_abort_s, self._abort_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stall_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_stall_timer()
        super().connection_lost(exc)

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _abort_stalled(self) -> None:
        self._stall_timer = None
        logger.warning("aborting a connection whose peer stopped reading")
        self.transport.abort()


def _ws_protocol(settings: Settings) -> type[WebSocketsSansIOProtocol]:
    # The handler drops a slow reader after send_timeout_s and then tries to close within send_timeout_s.
    stall = 2 * settings.limits.send_timeout_s + 1.0
    return type("StallAbortingProtocol", (StallAbortingProtocol,), {"stall_abort_s": stall})


def uvicorn_config(settings: Settings, app: FastAPI, **overrides: Any) -> uvicorn.Config:
    """The uvicorn settings of this server; ``overrides`` are for tests (e.g. ``log_level``)."""
    options: dict[str, Any] = {
        "host": settings.server.host,
        "port": settings.server.port,
        "ws": _ws_protocol(settings),
        "ws_max_size": settings.limits.ws_max_message_bytes,
        "ws_per_message_deflate": False,
        "log_level": settings.server.log_level.lower(),
        "timeout_graceful_shutdown": settings.limits.send_timeout_s * 2 + 5.0,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: turn /readyz false (and wait ``readiness_grace_s``), stop accepting, let running turns
    finish (at most ``drain_timeout_s``), then let uvicorn close the remaining connections (1012) and run the
    lifespan shutdown.

    uvicorn alone would close every WebSocket with 1012 at once, cancelling turns in mid-answer.
    """

    def __init__(
        self, config: uvicorn.Config, app: FastAPI, drain_timeout_s: float, readiness_grace_s: float = 0.0
    ) -> None:
        super().__init__(config)
        self.app = app
        self.drain_timeout_s = drain_timeout_s
        self.readiness_grace_s = readiness_grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Readiness first: /readyz answers 503 from now on, so balancers and orchestrators stop sending new
        # connections; during readiness_grace_s (for those that only poll /readyz) everything still works.
        self.app.state.shutting_down = True
        if self.readiness_grace_s > 0:
            logger.info("not ready: waiting before closing the listener", extra={"seconds": self.readiness_grace_s})
            await asyncio.sleep(self.readiness_grace_s)
        for server in self.servers:
            server.close()  # stop accepting: new connections are refused from now on
        self.app.state.draining = True
        services = getattr(self.app.state, "services", None)
        if services is not None:
            await self._drain(services)
        await super().shutdown(sockets)

    async def _drain(self, services: AppServices) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout_s
        busy = [c for c in services.connections if getattr(c, "busy", False)]
        if busy:
            logger.info("draining running turns", extra={"connections": len(busy)})
        while busy and loop.time() < deadline:
            await asyncio.sleep(0.05)
            busy = [c for c in services.connections if getattr(c, "busy", False)]
        if busy:
            logger.warning("drain timeout: closing connections with turns still running")


def build_server(settings: Settings, app: FastAPI, **overrides: Any) -> DrainingServer:
    """The server ``python -m backend.main`` runs; tests use it with a pre-bound socket."""
    return DrainingServer(
        uvicorn_config(settings, app, **overrides),
        app,
        settings.server.drain_timeout_s,
        settings.server.readiness_grace_s,
    )


def run_server(server: DrainingServer, sockets: list[socket.socket] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, drain, and return (exit status 0)."""
    # uvicorn re-raises the signal that stopped it once it has shut down; a no-op handler lets a drained
    # shutdown end normally instead of dying by that signal.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run(sockets=sockets)
