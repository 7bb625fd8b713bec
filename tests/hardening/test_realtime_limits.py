"""The existing WebSocket limits hold on /v1/realtime too, on a real uvicorn built like the product's server:
message size (1009), input byte rate (error rate_limited, 1008), idle timeout (1001), the connection cap (1013)
and the Origin check (handshake 403); each also under uvicorn with its own defaults (``plain``: as
``uvicorn backend.main:app`` runs the app)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import make_settings
from tests.hardening.harness import serve

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

both_servers = pytest.mark.parametrize("plain", [False, True], ids=["server", "plain-uvicorn"])


def _open(port: int, headers: dict[str, str] | None = None) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{port}/v1/realtime", open_timeout=10, compression=None, additional_headers=headers)


def _closed(ws: ClientConnection) -> tuple[int, list[dict[str, object]]]:
    events: list[dict[str, object]] = []
    try:
        while True:
            message = ws.recv(timeout=15)
            events.append(json.loads(message))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code, events


def _append(seconds: float) -> str:
    audio = base64.b64encode(b"\x00\x00" * int(24000 * seconds)).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


@both_servers
def test_oversized_message_closes_1009(tmp_path: Path, plain: bool) -> None:
    """An append bigger than limits.ws_max_message_bytes is closed 1009 by the server; a smaller one is fine."""
    with serve(make_settings(tmp_path), plain=plain) as served, _open(served.port) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        ws.send(_append(0.5))  # about 32 KB of JSON: under the 64 KiB limit
        ws.send(_append(1.5))  # about 96 KB
        code, events = _closed(ws)
    assert code == 1009 and not [e for e in events if e["type"] == "error"]


@both_servers
def test_input_faster_than_the_byte_rate_is_closed_1008(tmp_path: Path, plain: bool) -> None:
    """Audio appended far faster than real time trips the byte-rate limit (scaled for base64 24 kHz): an error
    event rate_limited, then close 1008."""
    settings = make_settings(tmp_path, limits__max_bytes_per_s=8000, limits__rate_window_s=1.0)
    with serve(settings, plain=plain) as served, _open(served.port) as ws:
        ws.recv(timeout=10)
        for _ in range(10):
            ws.send(_append(0.2))
        code, events = _closed(ws)
    assert code == 1008
    assert [e["error"]["code"] for e in events if e["type"] == "error"] == ["rate_limited"]  # type: ignore[index]


@both_servers
def test_idle_client_closed_1001(tmp_path: Path, plain: bool) -> None:
    """A silent client is closed 1001 after idle_timeout_s."""
    with serve(make_settings(tmp_path, limits__idle_timeout_s=0.5), plain=plain) as served, _open(served.port) as ws:
        ws.recv(timeout=10)
        assert _closed(ws)[0] == 1001


@both_servers
def test_cap_1013_and_origin_403(tmp_path: Path, plain: bool) -> None:
    """Past max_connections a client is closed 1013 (the first is kept: the idle timeout is the default 120 s,
    no race with it); with auth on, a foreign Origin is refused at the handshake."""
    settings = make_settings(tmp_path, limits__max_connections=1, auth__api_keys=["k-1"])
    headers = {"Authorization": "Bearer k-1"}
    with serve(settings, plain=plain) as served:
        with _open(served.port, headers) as first:
            first.recv(timeout=10)
            with _open(served.port, headers) as second:
                assert _closed(second)[0] == 1013
        with pytest.raises(InvalidStatus) as refused:
            _open(served.port, {**headers, "Origin": "http://evil.example"})
        assert refused.value.response.status_code == 403
