"""The app under uvicorn's own command line and defaults, as ``uvicorn backend.main:app`` runs it (a 16 MiB
WebSocket message cap of uvicorn's own, permessage-deflate on): the app still refuses a message over
limits.ws_max_message_bytes with close 1009, on /ws/voice and /v1/realtime, and keeps serving. The app is
``create_app()`` with fake models (tests/hardening/plain_app.py), settings read at startup as backend.main:app.

``slow``: it starts a server process (a few seconds). The other limits under uvicorn's defaults are checked in
process by the ``plain-uvicorn`` cases of test_limits.py, test_realtime_limits.py and test_slow_reader.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from backend.config import REPO_ROOT
from tests.hardening.harness import wait_ready
from tests.hardening.live import recv_event, ws_connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TWO_MIB = 2 * 2**20


@pytest.fixture
def plain_uvicorn(tmp_path: Path) -> Iterator[int]:
    """``python -m uvicorn tests.hardening.plain_app:app`` on a socket bound here (``--fd``: no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port: int = sock.getsockname()[1]
    env = {
        **os.environ,
        "CM_DATABASE__URL": f"sqlite:///{tmp_path / 'plain.db'}",
        "CM_SERVER__LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.hardening.plain_app:app",
            "--fd",
            str(sock.fileno()),
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        env=env,
        pass_fds=[sock.fileno()],
        text=True,
    )
    try:
        wait_ready(proc, port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sock.close()


def _close_code(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=15)
    assert closed.value.rcvd is not None, "no close frame from the server"
    return closed.value.rcvd.code


def test_a_2_mib_message_closes_1009_on_both_websockets(plain_uvicorn: int) -> None:
    """A 2 MiB binary frame on /ws/voice and a 2 MiB text event on /v1/realtime: close 1009 each; a new
    connection is then served."""
    base = f"ws://127.0.0.1:{plain_uvicorn}"
    with ws_connect(f"{base}/ws/voice") as ws:
        assert recv_event(ws)["type"] == "session"
        ws.send(b"\x00" * TWO_MIB)
        assert _close_code(ws) == 1009
    with ws_connect(f"{base}/v1/realtime") as ws:
        assert recv_event(ws)["type"] == "session.created"
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * TWO_MIB}))
        assert _close_code(ws) == 1009
    with ws_connect(f"{base}/ws/voice") as ws:
        assert recv_event(ws)["type"] == "session"
