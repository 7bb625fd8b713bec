"""The official OpenAI clients against a real uvicorn on 127.0.0.1 serving the real embedded models.

The ``openai`` SDK holds a spoken conversation over /v1/realtime (espeak-ng speech at 24 kHz), the Agents SDK's
``RealtimeRunner`` completes a spoken turn with strict validation of every server event, and the ``openai`` SDK's
chat completions get mentor replies. The SDKs run in their own virtual environment (.venv-sdk/, made on first
use from requirements_sdk.txt) because they pin an older websockets than the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.engines.model_service import ModelService
from backend.engines.protocols import EMOTIONS
from backend.main import create_app
from scripts.common.espeak import espeak_available, speak_pcm
from scripts.common.wer import word_error_rate
from tests.conftest import make_settings
from tests.live_server import LiveServer
from tests.openai_compat.sdk_env import run_client, sdk_python

pytestmark = [
    pytest.mark.real,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed"),
]

FIRST = "I have been feeling really stressed about my exams this week"
SECOND = "I keep comparing myself to my friends and it makes me feel small"
BARGE_IN = "Wait, can you help me plan a calmer week"


@pytest.fixture(scope="module")
def python() -> Path:
    return sdk_python()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("openai"))
    models = ModelService(settings)
    models.load_all()
    with LiveServer(create_app(settings, models=models)) as live:
        yield live


def speech_file(folder: Path, name: str, text: str) -> str:
    path = folder / f"{name}.pcm"
    path.write_bytes(speak_pcm(text, voice="en-us", rate=160, sample_rate=24000))
    return str(path)


def test_openai_sdk_spoken_conversation_with_barge_in(server: LiveServer, python: Path, tmp_path: Path) -> None:
    """openai's realtime client: turn 1 is transcribed (with its emotion) and answered in audio (completed);
    turn 2 is interrupted by speech mid-reply (cancelled, turn_detected) and the interrupting speech is answered;
    the stored history holds every turn in order, so each later turn's prompt saw the earlier ones."""
    result = run_client(
        python,
        "realtime_conversation.py",
        "--base-url",
        f"{server.http_url}/v1",
        "--say",
        speech_file(tmp_path, "first", FIRST),
        "--say",
        speech_file(tmp_path, "second", SECOND),
        "--barge-in",
        speech_file(tmp_path, "barge", BARGE_IN),
    )
    first, second, third = result["responses"]
    assert first["status"] == "completed" and first["audio_bytes"] > 24000, first
    assert first["transcript"][0] and first["usage"]["output_tokens"] > 0
    assert first["metadata"]["emotion"] in EMOTIONS
    transcribed = [e for e in result["events"] if e["type"].endswith("input_audio_transcription.completed")]
    assert word_error_rate(FIRST, transcribed[0]["transcript"]) <= 0.3, transcribed[0]
    assert transcribed[0]["emotion"]["label"] in EMOTIONS
    assert second["status"] == "cancelled" and second["reason"] == "turn_detected", second
    assert third["status"] == "completed" and third["audio_bytes"] > 0, third
    assert not [e for e in result["events"] if e["type"] == "error"]
    history = httpx.get(f"{server.http_url}/api/sessions/{result['session_id']}/history", timeout=10).json()["turns"]
    assert [t["role"] for t in history] == ["user", "assistant"] * 3
    assert word_error_rate(FIRST, history[0]["text"]) <= 0.3
    assert history[3]["interrupted"] is True


def test_agents_sdk_realtime_runner_turn_has_no_validation_errors(
    server: LiveServer, python: Path, tmp_path: Path
) -> None:
    """The Agents SDK validates every server event with pydantic (semantic_vad, its defaults): a spoken turn
    ends (agent_end) with reply audio, both items in its history, and no error event at all."""
    url = f"ws://127.0.0.1:{server.port}/v1/realtime?model=claritymentor"
    result = run_client(python, "agents_turn.py", "--url", url, "--say", speech_file(tmp_path, "first", FIRST))
    assert result["errors"] == [], result["errors"]
    assert "Failed to validate" not in result["stderr"]
    assert "agent_end" in result["events"] and result["audio_bytes"] > 0
    roles = [item["role"] for item in result["history"]]
    assert roles == ["user", "assistant"], result["history"]
    assert result["history"][1]["content"][0]["transcript"]


def test_openai_sdk_chat_completions(server: LiveServer, python: Path) -> None:
    """chat.completions.create, plain and streamed with include_usage, answers as the mentor (emotion detected
    on the message); models.list names the mentor; an unknown model is a 404 in the OpenAI error shape."""
    result = run_client(python, "chat.py", "--base-url", f"{server.http_url}/v1", "--text", FIRST)
    assert result["models"] == ["claritymentor"]
    assert result["plain"].strip() and result["finish_reason"] == "stop"
    assert result["streamed"].strip() and result["chunks"] > 2
    assert result["usage"]["completion_tokens"] > 0 and result["stream_usage"]["total_tokens"] > 0
    assert result["emotion"]["label"] in EMOTIONS
    assert result["unknown_model"] == {"status": 404, "code": "model_not_found", "type": "invalid_request_error"}
