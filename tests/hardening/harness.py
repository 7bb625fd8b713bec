"""The server exactly as ``python -m backend.main`` builds it (``backend.main.build_server``), on 127.0.0.1 in a
thread or in a child process, with fake models."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from backend.api.deps import AppServices
from backend.config import REPO_ROOT, Settings
from backend.main import create_app
from backend.server import build_server
from tests.fakes import FakeModels


@dataclass
class Served:
    app: FastAPI
    server: uvicorn.Server
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/voice"

    @property
    def services(self) -> AppServices:
        services: AppServices = self.app.state.services
        return services


@contextmanager
def serve(settings: Settings, fakes: FakeModels | None = None, *, plain: bool = False) -> Iterator[Served]:
    """Run the app (fake models) under ``build_server`` on an ephemeral port until the block ends. ``plain``:
    under uvicorn with its own defaults instead, as ``uvicorn backend.main:app`` runs it (no WebSocket message
    cap of ours, permessage-deflate on, no drain, no stall abort)."""
    fakes = fakes or FakeModels()
    app = create_app(settings, models=fakes.service(settings))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    server: uvicorn.Server = (
        uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        if plain
        else build_server(settings, app, log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield Served(app, server, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the server did not shut down"


def wait_for(predicate: object, timeout: float, what: str) -> float:
    """Poll ``predicate()`` until true; returns the seconds it took. Fails the test after ``timeout``."""
    assert callable(predicate)
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - start


def rss_bytes() -> int:
    """Resident memory of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Child:
    """A server child process (``tests.hardening.fake_server``) and the port it announced."""

    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/voice"


def start_child(db_path: Path, *env_pairs: tuple[str, str]) -> Child:
    """Start the fake-model server in a fresh interpreter; returns once it accepts connections."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "CM_DATABASE__URL": f"sqlite:///{db_path}",
        "CM_SERVER__LOG_LEVEL": "WARNING",
        **dict(env_pairs),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hardening.fake_server"],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("port "):
        proc.kill()
        proc.wait()
        raise AssertionError(f"the server child did not start: {line!r}")
    port = int(line.split()[1])
    wait_ready(proc, port)  # "port" is printed before uvicorn starts listening on the bound socket
    return Child(proc, port)


def wait_ready(proc: subprocess.Popen[str], port: int, timeout_s: float = 30.0) -> None:
    """Wait until the server process on ``port`` answers ``GET /api/health`` (its lifespan has run)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "the server child did not become ready"
        time.sleep(0.05)
