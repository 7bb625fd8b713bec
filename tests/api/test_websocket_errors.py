"""Bad input on /ws/voice gets an `error` event with a stable code, and the connection stays usable."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.wsutil import receive_until
from tests.fakes import FakeModels, silence_pcm, tone_pcm

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json at all", "invalid_json"),
        ("[1, 2, 3]", "invalid_json"),
        ("[" * 5000 + "]" * 5000, "invalid_json"),  # refused by depth, never by the parser's recursion limit
        ('{"type": "dance"}', "unknown_event"),
        ('{"no_type": true}', "unknown_event"),
        ('{"type": "text"}', "invalid_input"),
        ('{"type": "text", "text": ""}', "invalid_input"),
        ('{"type": "session.start", "sample_rate": 12345}', "unsupported_sample_rate"),
        ('{"type": "session.start", "mentor": "nobody"}', "unknown_persona"),
        ('{"type": "session.start", "user_id": "not ok"}', "invalid_input"),
        ('{"type": "session.start", "session_id": "../../etc"}', "invalid_input"),
        ('{"type": "input.commit", "extra": 1}', "invalid_input"),
    ],
)
def test_bad_event_gets_error_and_connection_stays_usable(client: TestClient, frame: str, code: str) -> None:
    """Each malformed client event yields one error event with its code; a text turn still works after it."""
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_text(frame)
        error = receive_until(ws, "error").first("error")
        assert error["code"] == code, error
        assert error["message"]
        ws.send_json({"type": "text", "text": "still there?"})
        got = receive_until(ws, "metrics")
    assert got.first("response")["text"]


def test_odd_length_pcm_is_reported_and_not_lost(client: TestClient, fakes: FakeModels) -> None:
    """An odd-length binary message is reported once; its bytes are carried over, so the utterance completes."""
    audio = silence_pcm(0.2) + tone_pcm(1.0) + silence_pcm(0.8)
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        step = 641
        for i in range(0, len(audio), step):
            ws.send_bytes(audio[i : i + step])
        got = receive_until(ws, "metrics")
    errors = [e for e in got.events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["invalid_audio"]
    assert fakes.stt.calls and fakes.stt.calls[0] >= 1.0


def test_declared_sample_rate_is_resampled(client: TestClient, fakes: FakeModels) -> None:
    """Audio at a declared 48 kHz is resampled to 16 kHz before the VAD and STT."""
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.start", "sample_rate": 48000})
        assert receive_until(ws, "session").first("session")["input_sample_rate"] == 48000
        audio = silence_pcm(0.2, 48000) + tone_pcm(1.0, 48000) + silence_pcm(0.8, 48000)
        for i in range(0, len(audio), 1920):
            ws.send_bytes(audio[i : i + 1920])
        receive_until(ws, "metrics")
    assert 1.0 <= fakes.stt.calls[0] <= 2.5


def test_commit_without_audio_is_an_error(client: TestClient) -> None:
    """input.commit with nothing buffered tells the client there was no audio, without a crash."""
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "input.commit"})
        assert receive_until(ws, "error").first("error")["code"] == "no_audio"
        ws.send_json({"type": "response.cancel"})
        assert receive_until(ws, "error").first("error")["code"] == "nothing_to_cancel"


def test_model_failure_is_an_error_event(client: TestClient, fakes: FakeModels) -> None:
    """An exception inside a model becomes a retryable error event, not a dropped connection."""
    fakes.llm.error = RuntimeError("boom")
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "text", "text": "hello"})
        error = receive_until(ws, "error").first("error")
        assert error["code"] == "internal_error" and error["retryable"] is True
        fakes.llm.error = None
        ws.send_json({"type": "text", "text": "hello again"})
        receive_until(ws, "metrics")


def test_empty_transcript_is_no_speech(client: TestClient, fakes: FakeModels) -> None:
    """Audio the STT hears no words in gives a `no_speech` error rather than an empty reply."""
    fakes.stt.transcript = ""
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_bytes(tone_pcm(0.6))
        ws.send_json({"type": "input.commit"})
        error = receive_until(ws, "error").first("error")
    assert error["code"] == "no_speech"
