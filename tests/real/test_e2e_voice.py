"""End to end on the real embedded models, through a real uvicorn on 127.0.0.1 and /ws/voice.

Speech is made with espeak-ng in the test, streamed at real-time pace, endpointed by the server's VAD,
transcribed, answered and spoken; the reply audio is transcribed back by the same Whisper model.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from backend.config import Settings
from backend.core.audio_utils import pcm16_to_float32, resample_pcm16
from backend.engines.model_service import ModelService
from backend.engines.protocols import EMOTIONS
from backend.main import create_app
from scripts.common.espeak import espeak_available, speak_pcm
from scripts.common.wer import word_error_rate
from tests.conftest import make_settings
from tests.live_server import LiveServer

pytestmark = [
    pytest.mark.real,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed"),
]

SENTENCE = "I have been feeling really stressed about my exams this week"
FRAME = 640  # 20 ms at 16 kHz


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelService:
    settings = make_settings(tmp_path_factory.mktemp("models"))
    service = ModelService(settings)
    service.load_all()
    return service


@pytest.fixture
def db_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def server(db_settings: Settings, models: ModelService) -> Iterator[LiveServer]:
    with LiveServer(create_app(db_settings, models=models)) as live:
        yield live


@dataclass
class Turn:
    events: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)

    def first(self, event_type: str) -> dict[str, Any]:
        return next(e for e in self.events if e["type"] == event_type)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


def stream_speech(ws: ClientConnection, pcm: bytes, trailing_silence_s: float = 1.0) -> None:
    """Send speech then silence in 20 ms frames at real-time pace, like a microphone."""
    audio = pcm + b"\x00\x00" * int(16000 * trailing_silence_s)
    start = time.perf_counter()
    for i, offset in enumerate(range(0, len(audio), FRAME)):
        ws.send(audio[offset : offset + FRAME])
        delay = start + (i + 1) * 0.02 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing the fake microphone, not waiting for the server


def receive_turn(ws: ClientConnection, until: str = "metrics", timeout: float = 120.0) -> Turn:
    turn = Turn()
    deadline = time.monotonic() + timeout
    while True:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, bytes):
            turn.audio.extend(message)
            continue
        event = json.loads(message)
        turn.events.append(event)
        assert event["type"] != "error", event
        if event["type"] == until:
            return turn


def transcribe_back(models: ModelService, pcm: bytes, rate: int) -> str:
    return models.stt.transcribe(pcm16_to_float32(resample_pcm16(pcm, rate, 16000))).text


def test_spoken_turn_end_to_end(server: LiveServer, models: ModelService) -> None:
    """Speech in -> transcript (WER <= 0.2), an emotion, a non-empty reply, and reply audio that is real speech."""
    with connect(server.ws_url, max_size=None) as ws:
        session = json.loads(ws.recv(timeout=10))
        assert session["type"] == "session"
        stream_speech(ws, speak_pcm(SENTENCE, voice="en-us", rate=160))
        turn = receive_turn(ws)
    assert word_error_rate(SENTENCE, turn.first("transcript")["text"]) <= 0.2
    emotion = turn.first("emotion")["data"]
    assert emotion["label"] in EMOTIONS and 0.0 < emotion["confidence"] <= 1.0
    reply = turn.first("response")["text"]
    assert reply.strip()
    assert turn.first("audio.start")["sample_rate"] == session["output_sample_rate"]
    assert len(turn.audio) == turn.first("audio.end")["bytes"] > 16000
    heard = transcribe_back(models, bytes(turn.audio), session["output_sample_rate"])
    assert len(heard.split()) >= 3, heard
    assert word_error_rate(reply, heard) <= 0.6, (reply, heard)
    timings = turn.first("metrics")["timings"]
    assert 0 < timings["transcript"] <= timings["first_audio"] <= timings["last_audio"]


def test_barge_in_on_real_models(server: LiveServer) -> None:
    """Speaking while the mentor answers interrupts it; the interruption is stored on the assistant turn."""
    with connect(server.ws_url, max_size=None) as ws:
        session_id = json.loads(ws.recv(timeout=10))["session_id"]
        ws.send(json.dumps({"type": "text", "text": "Tell me how to calm down before a big presentation."}))
        turn = receive_turn(ws, until="audio.start")
        stream_speech(ws, speak_pcm("wait, stop, I have a question", voice="en-us"), trailing_silence_s=0.8)
        receive_turn(ws, until="interrupted", timeout=60)
        nxt = receive_turn(ws, until="metrics")
    assert "transcript" in nxt.types() and turn.types()
    history = httpx.get(f"{server.http_url}/api/sessions/{session_id}/history", timeout=10).json()["turns"]
    first_reply = next(t for t in history if t["role"] == "assistant")
    assert first_reply["interrupted"] is True


def test_event_loop_stays_responsive_during_real_generation(server: LiveServer) -> None:
    """While the real LLM generates a reply, /api/health keeps answering quickly. A model call on the event loop
    would stall every check for the whole generation; the median check must stay far below that."""
    done = threading.Event()

    def chat() -> None:
        httpx.post(f"{server.http_url}/api/text-chat", json={"text": "I feel sad today."}, timeout=120)
        done.set()

    worker = threading.Thread(target=chat)
    started = time.perf_counter()
    worker.start()
    latencies: list[float] = []
    while not done.is_set() and len(latencies) < 200:
        start = time.perf_counter()
        assert httpx.get(f"{server.http_url}/api/health", timeout=30).status_code == 200
        latencies.append(time.perf_counter() - start)
        done.wait(0.05)
    worker.join(120)
    turn_s = time.perf_counter() - started
    assert len(latencies) >= 3, "the turn finished too fast to observe"
    median = sorted(latencies)[len(latencies) // 2]
    assert median < min(0.3, turn_s / 4), f"median health {median:.3f}s during a {turn_s:.1f}s turn"


def test_session_survives_a_restart(db_settings: Settings, models: ModelService) -> None:
    """A session made before a server restart continues after it, with its history in the store and the prompt."""
    with LiveServer(create_app(db_settings, models=models)) as first:
        reply = httpx.post(
            f"{first.http_url}/api/text-chat", json={"text": "My sister Maya is getting married."}, timeout=120
        ).json()
    session_id = reply["session_id"]
    with LiveServer(create_app(db_settings, models=models)) as second:
        with connect(second.ws_url, max_size=None) as ws:
            json.loads(ws.recv(timeout=10))
            ws.send(json.dumps({"type": "session.start", "session_id": session_id}))
            resumed = receive_turn(ws, until="session")
            assert resumed.first("session")["resumed"] is True
            ws.send(json.dumps({"type": "text", "text": "I am happy for her."}))
            receive_turn(ws)
        history = httpx.get(f"{second.http_url}/api/sessions/{session_id}/history", timeout=10).json()["turns"]
    assert [t["role"] for t in history] == ["user", "assistant", "user", "assistant"]
    assert history[0]["text"] == "My sister Maya is getting married."
