"""test_client.run_client against a scripted protocol-v1 server (websockets on 127.0.0.1, port 0)."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from backend.core.audio_utils import write_wav
from test_client import parse_args, run_client

pytestmark = pytest.mark.fast

REPLY_RATE = 24000
REPLY_AUDIO = bytes(range(256)) * 10  # 2560 bytes, sent in two messages


class FakeServer:
    """Speaks one scripted turn; the script is chosen by the URL path. Records what the client sent."""

    def __init__(self) -> None:
        self.port = 0
        self.received: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(5)

    def url(self, script: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{script}"

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._handle, "127.0.0.1", 0) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        self.headers.append(dict(ws.request.headers.raw_items()))
        script = ws.request.path.split("?")[0].strip("/")
        await ws.send(
            json.dumps(
                {
                    "type": "session",
                    "session_id": "s1",
                    "protocol": "1",
                    "input_sample_rate": 16000,
                    "output_sample_rate": 22050,
                }
            )
        )
        async for message in ws:
            self.received.append(message)
            if isinstance(message, bytes):
                continue
            event = json.loads(message)
            if event["type"] not in ("input.commit", "text"):
                continue
            if script == "error":
                await ws.send(json.dumps({"type": "error", "code": "model_error", "message": "boom"}))
            elif script == "ok":
                await self._turn(ws)
            elif script == "close":
                await ws.close()
            # "mute": never answers

    async def _turn(self, ws: ServerConnection) -> None:
        for event in (
            {"type": "status", "message": "Processing..."},
            {"type": "transcript", "turn_id": "t1", "text": "I feel stressed."},
            {"type": "emotion", "turn_id": "t1", "data": {"label": "anxious", "confidence": 0.8}},
            {"type": "response.delta", "turn_id": "t1", "text": "Let's breathe."},
            {"type": "audio.start", "turn_id": "t1", "sample_rate": REPLY_RATE},
        ):
            await ws.send(json.dumps(event))
        await ws.send(REPLY_AUDIO[:1280])
        await ws.send(json.dumps({"type": "response", "turn_id": "t1", "text": "Let's breathe together."}))
        await ws.send(REPLY_AUDIO[1280:])
        await ws.send(
            json.dumps(
                {
                    "type": "audio.end",
                    "turn_id": "t1",
                    "bytes": len(REPLY_AUDIO),
                    "duration_s": len(REPLY_AUDIO) / 2 / REPLY_RATE,
                }
            )
        )


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    """0.3 s of a 220 Hz tone at 8 kHz (the client must resample it to 16 kHz)."""
    t = np.arange(2400) / 8000
    path = tmp_path / "in.wav"
    write_wav(path, (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes(), 8000)
    return path


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run_client(parse_args(["--fast", "--trailing-silence", "0.1", "--timeout", "5", *argv]), out)
    return code, out.getvalue()


def test_voice_turn_completes_and_writes_the_wav(server: FakeServer, speech_wav: Path, tmp_path: Path) -> None:
    """A voice turn ending in audio.end exits 0; the reply WAV has the rate announced in audio.start."""
    reply = tmp_path / "reply.wav"
    code, text = _run("--url", server.url("ok"), "--wav", str(speech_wav), "--commit", "--out", str(reply))
    assert code == 0
    with wave.open(str(reply)) as w:
        assert w.getframerate() == REPLY_RATE
        assert w.readframes(w.getnframes()) == REPLY_AUDIO
    assert "[audio 1280 bytes]" in text
    assert '"type": "transcript"' in text
    assert "transcript: I feel stressed." in text
    assert "emotion: anxious" in text
    assert "response: Let's breathe together." in text
    assert "first audio:" in text


def test_audio_is_sent_as_16k_chunks_after_session_start(server: FakeServer, speech_wav: Path) -> None:
    """The client declares 16 kHz, resamples the 8 kHz WAV, sends 20 ms chunks plus trailing silence."""
    server.received.clear()
    assert _run("--url", server.url("ok"), "--wav", str(speech_wav), "--commit")[0] == 0
    first = json.loads(server.received[0])
    assert first == {"type": "session.start", "sample_rate": 16000}
    chunks = [m for m in server.received if isinstance(m, bytes)]
    assert max(len(c) for c in chunks) == 640
    assert sum(len(c) for c in chunks) == 2 * (4800 + 1600)  # 0.3 s speech + 0.1 s silence at 16 kHz
    assert json.loads(server.received[-1]) == {"type": "input.commit"}


def test_text_turn_with_session_and_api_key(server: FakeServer) -> None:
    """A text turn resumes the given session and sends the API key as query parameter and header."""
    server.received.clear()
    code, _ = _run("--url", server.url("ok"), "--text", "hello", "--session", "abc", "--api-key", "k1")
    assert code == 0
    assert json.loads(server.received[0]) == {"type": "session.start", "sample_rate": 16000, "session_id": "abc"}
    assert json.loads(server.received[1]) == {"type": "text", "text": "hello"}
    assert server.paths[-1].endswith("?api_key=k1")
    assert server.headers[-1].get("X-API-Key") == "k1"


def test_error_event_exits_1(server: FakeServer) -> None:
    """An error event from the server ends the run with exit status 1 and shows its code."""
    code, text = _run("--url", server.url("error"), "--text", "hello")
    assert code == 1
    assert "error: model_error: boom" in text


def test_silence_without_a_turn_exits_0(server: FakeServer) -> None:
    """Silence the server ignores ends after --silence-wait with exit 0 and 'no speech detected'."""
    code, text = _run("--url", server.url("mute"), "--silence-wait", "0.2")
    assert code == 0
    assert "no speech detected" in text


def test_unanswered_turn_times_out_with_2(server: FakeServer) -> None:
    """A text turn with no reply ends at --timeout with exit status 2."""
    out = io.StringIO()
    code = run_client(parse_args(["--url", server.url("mute"), "--text", "hi", "--timeout", "0.3"]), out)
    assert code == 2
    assert "timed out" in out.getvalue()


def test_server_closing_early_exits_2(server: FakeServer) -> None:
    """The server closing the socket before any reply is a failure (2), not a success."""
    assert _run("--url", server.url("close"), "--text", "hi")[0] == 2


def test_connection_refused_exits_2() -> None:
    """No server listening: exit status 2 and a message saying the connection failed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, text = _run("--url", f"ws://127.0.0.1:{port}/ws/voice", "--text", "hi")
    assert code == 2
    assert "connection failed" in text
