"""REST API with fake models: health, sessions, history, text chat, SSE, errors, loop responsiveness."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeModels

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


def test_health_reports_each_model(client: TestClient) -> None:
    """/api/health lists every model with its state and load time."""
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["models_loaded"] is True
    assert set(body["models"]) == {"stt", "vad", "emotion", "llm", "tts", "safety"}
    assert all(m["state"] == "loaded" for m in body["models"].values())
    assert "timestamp" in body


def test_session_crud_and_history(client: TestClient) -> None:
    """Sessions can be created, listed, read and deleted; deleting removes the history."""
    created = client.post("/api/sessions", json={"title": "evening chat"})
    assert created.status_code == 201
    sid = created.json()["id"]
    assert sid in [s["id"] for s in client.get("/api/sessions").json()["sessions"]]
    chat = client.post("/api/text-chat", json={"text": "I am nervous about my exam", "session_id": sid})
    assert chat.status_code == 200
    turns = client.get(f"/api/sessions/{sid}/history").json()["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert turns[0]["text"] == "I am nervous about my exam"
    assert turns[0]["emotion"]["label"] == "sad"
    assert client.delete(f"/api/sessions/{sid}").status_code == 204
    assert client.get(f"/api/sessions/{sid}/history").status_code == 404


def test_text_chat_returns_reply_and_emotion(client: TestClient, fakes: FakeModels) -> None:
    """POST /api/text-chat runs the turn logic without audio and returns session, reply and emotion."""
    body = client.post("/api/text-chat", json={"text": "hello"}).json()
    assert body["response"] == fakes.llm.reply
    assert body["emotion"]["label"] == "sad"
    assert body["session_id"]
    assert fakes.tts.texts == [], "text chat must not synthesize speech"
    again = client.post("/api/text-chat", json={"text": "and again", "session_id": body["session_id"]}).json()
    assert again["session_id"] == body["session_id"]
    assert any(m.content == "hello" for m in fakes.llm.prompts[-1])


def test_text_chat_stream_is_server_sent_events(client: TestClient, fakes: FakeModels) -> None:
    """The streaming form sends the turn's events as SSE, deltas before the full response."""
    with client.stream("POST", "/api/text-chat/stream", json={"text": "hello"}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = "".join(resp.iter_text())
    events = [block.split("\n")[0].removeprefix("event: ") for block in body.strip().split("\n\n")]
    assert events[0] == "session" and events[-1] == "done"
    assert events.index("response.delta") < events.index("response")
    data = json.loads(body.split("event: response\ndata: ")[1].split("\n")[0])
    assert data["text"] == fakes.llm.reply


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code"),
    [
        ("post", "/api/text-chat", {"text": ""}, 422, "invalid_input"),
        ("post", "/api/text-chat", {"text": "hi", "persona": "nobody"}, 404, "unknown_persona"),
        ("post", "/api/text-chat", {"text": "hi", "session_id": "bad id!"}, 422, "invalid_input"),
        ("get", "/api/sessions/unknown/history", None, 404, "session_not_found"),
        ("delete", "/api/sessions/unknown", None, 404, "session_not_found"),
    ],
)
def test_rest_errors_have_codes(
    client: TestClient, method: str, path: str, payload: object, status: int, code: str
) -> None:
    """REST errors come back with the error base's stable code and the right HTTP status."""
    resp = client.request(method.upper(), path, json=payload)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code


def test_event_loop_stays_responsive_while_generating(client: TestClient, fakes: FakeModels) -> None:
    """While the LLM blocks in its worker thread (held until released), /api/health answers: the health
    response arrives before the LLM is released and before the chat returns. (tests/test_wall_clock.py
    checks it also answers within 0.5 s.)"""
    fakes.llm.hold_after = 2
    result: dict[str, object] = {}

    def chat() -> None:
        result["resp"] = client.post("/api/text-chat", json={"text": "hello"})

    def health() -> None:
        result["health"] = client.get("/api/health")

    worker = threading.Thread(target=chat)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not fakes.llm.prompts and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fakes.llm.prompts, "generation did not start"
        probe = threading.Thread(target=health, daemon=True)
        probe.start()
        probe.join(30)  # only a guard against hanging: the LLM stays held however long this takes
        assert "health" in result, "/api/health did not answer while the LLM was generating"
        assert result["health"].status_code == 200  # type: ignore[attr-defined]
        assert not fakes.llm.release.is_set() and worker.is_alive() and "resp" not in result
    finally:
        fakes.llm.release.set()
        worker.join(10)
    assert result["resp"].status_code == 200  # type: ignore[attr-defined]


def test_metrics_endpoint_is_prometheus(client: TestClient) -> None:
    """/metrics exposes the stage histograms and counters in Prometheus text format."""
    client.post("/api/text-chat", json={"text": "hello"})
    text = client.get("/metrics").text
    assert "claritymentor_stage_seconds_bucket" in text
    assert 'claritymentor_turns_total{kind="text",outcome="ok"} 1.0' in text
