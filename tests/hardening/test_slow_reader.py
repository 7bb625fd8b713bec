"""A slow reader on a real uvicorn: a raw-socket client with a tiny receive buffer asks for a long spoken reply
and never reads. The handler is released within seconds, the transport is aborted (no connection left
waiting on a full TCP buffer), memory stays bounded, and the partial reply is stored as interrupted. Under
uvicorn with its own defaults (``plain``, as ``uvicorn backend.main:app``) all of it holds but the transport abort,
which needs backend/server.py's protocol (uvicorn leaves the stalled connection open until the peer goes).

``slow``: it waits out the send deadline and the stall abort (about 4 s)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from pathlib import Path

import pytest

from backend.engines.protocols import SynthesizedSpeech, VoiceStyle
from tests.conftest import make_settings
from tests.fakes import FakeModels, FakeTTS
from tests.hardening.harness import rss_bytes, serve, wait_for
from tests.hardening.live import recv_event, text_turn, ws_connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

SEND_TIMEOUT_S = 1.0


class CheapTTS(FakeTTS):
    """Long speech without numpy temporaries, so RSS measures the server's buffering, not the fake."""

    def synthesize(self, text: str, style: VoiceStyle) -> SynthesizedSpeech:
        self.texts.append(text)
        return SynthesizedSpeech(
            b"\x10\x27" * int(len(text.split()) * self.seconds_per_word * self.sample_rate), self.sample_rate
        )


def _masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 65536
    head = b"\x81" + (bytes([0x80 | len(payload)]) if len(payload) < 126 else b"\xfe" + struct.pack("!H", len(payload)))
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _non_reading_client(port: int) -> socket.socket:
    """Handshake by hand with a 4 KiB receive buffer; afterwards the caller never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/voice HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "the server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


@pytest.mark.parametrize("plain", [False, True], ids=["server", "plain-uvicorn"])
def test_slow_reader_is_dropped_with_bounded_memory(tmp_path: Path, plain: bool) -> None:
    """A ~10 MB reply to a client that never reads: handler released and transport aborted within seconds,
    RSS growth bounded, assistant turn stored with interrupted=True, and the server keeps serving others."""
    fakes = FakeModels(tts=CheapTTS())
    fakes.tts.seconds_per_word = 20.0  # 15 words -> 300 s of 16 kHz PCM16 = 9.6 MB of reply audio
    settings = make_settings(tmp_path, limits__send_timeout_s=SEND_TIMEOUT_S)
    with serve(settings, fakes, plain=plain) as served:
        services = served.services
        before = rss_bytes()
        sock = _non_reading_client(served.port)
        try:
            sock.sendall(_masked_text_frame(json.dumps({"type": "text", "text": "tell me everything"})))
            start = time.monotonic()
            wait_for(lambda: len(services.connections) == 1, 5, "the connection to open")
            peak = before
            deadline = start + 15
            while services.connections:
                assert time.monotonic() < deadline, "the handler was not released"
                peak = max(peak, rss_bytes())
                time.sleep(0.02)
            released_s = time.monotonic() - start
            aborted_s = released_s
            if not plain:  # only backend/server.py's protocol aborts a stalled transport (uvicorn's never does)
                wait_for(lambda: not served.server.server_state.connections, 10, "the transport to be aborted")
                aborted_s = time.monotonic() - start
        finally:
            sock.close()
        growth_mb = (peak - before) / 2**20
        print(f"slow reader: released after {released_s:.1f} s, aborted after {aborted_s:.1f} s, +{growth_mb:.1f} MiB")
        assert released_s < 6 * SEND_TIMEOUT_S + 3
        assert aborted_s < released_s + 2 * SEND_TIMEOUT_S + 3
        assert growth_mb < 24  # 3.2 MB per synthesized sentence + a 512-message queue + TCP buffers
        sessions = services.store.sync.list_sessions()
        assert len(sessions) == 1
        history = services.store.sync.history(sessions[0].id)
        assert [(t.role, t.interrupted) for t in history] == [("user", False), ("assistant", True)]
        assert history[1].text in fakes.llm.reply  # at most what was sent: a prefix of the reply's sentences
        with ws_connect(served.url) as ws:
            recv_event(ws)
            fakes.tts.seconds_per_word = 0.05
            assert text_turn(ws, "are you still there?")[-1]["type"] == "metrics"
