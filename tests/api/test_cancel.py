"""POST /api/sessions/{id}/cancel stops a running generation on any wire, with the result of a barge-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from tests.api.wsutil import receive_until
from tests.conftest import make_settings
from tests.fakes import FakeModels

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

HELD_AFTER = 4  # the fake LLM blocks after "That sounds hard. You" until stopped
SENT = "That sounds hard."  # what was released of it: text goes out a checked clause at a time


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait (polling a condition another thread makes true) with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _reply_stored(client: TestClient, sid: str) -> dict[str, Any]:
    turns = client.get(f"/api/sessions/{sid}/history").json()["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant"]
    reply: dict[str, Any] = turns[1]
    return reply


def test_cancel_stops_a_rest_text_chat(client: TestClient, fakes: FakeModels) -> None:
    """A blocking text chat whose session is cancelled returns at once with the reply so far and
    interrupted=true; the LLM was stopped; the stored reply is that text, marked interrupted."""
    fakes.llm.hold_after = HELD_AFTER
    sid = client.post("/api/sessions", json={}).json()["id"]
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(resp=client.post("/api/text-chat", json={"text": "hi", "session_id": sid}))
    )
    worker.start()
    _wait_for(lambda: bool(fakes.llm.prompts), "the generation to start")
    cancelled = client.post(f"/api/sessions/{sid}/cancel")
    worker.join(10)
    assert cancelled.status_code == 200 and cancelled.json() == {"session_id": sid, "cancelled": True}
    assert fakes.llm.stopped.is_set() and not fakes.llm.release.is_set()
    body = result["resp"].json()
    assert body["interrupted"] is True and body["response"] == SENT
    stored = _reply_stored(client, sid)
    assert stored["interrupted"] is True and stored["text"] == SENT
    assert "claritymentor_interruptions_total 1.0" in client.get("/metrics").text


def test_cancel_stops_an_sse_stream_with_an_interrupted_event(client: TestClient, fakes: FakeModels) -> None:
    """Cancelling a streamed text chat ends its stream with `interrupted` (the text so far) and `done`."""
    fakes.llm.hold_after = HELD_AFTER
    sid = "sse-session"
    with client.stream("POST", "/api/text-chat/stream", json={"text": "hi", "session_id": sid}) as resp:
        lines = resp.iter_lines()
        seen: list[str] = []
        for line in lines:
            if line.startswith("event: "):
                seen.append(line.removeprefix("event: "))
                if seen[-1] == "response.delta":
                    break
        assert client.post(f"/api/sessions/{sid}/cancel").status_code == 200
        rest = "\n".join(lines)
    events = [line.removeprefix("event: ") for line in rest.split("\n") if line.startswith("event: ")]
    assert events[-2:] == ["interrupted", "done"] and "response" not in events
    assert '"spoken_text": "That sounds hard."' in rest
    assert _reply_stored(client, sid)["interrupted"] is True


def test_cancel_interrupts_a_websocket_reply_like_a_barge_in(client: TestClient, fakes: FakeModels) -> None:
    """A reply being spoken on /ws/voice is stopped by a cancel from another connection: the socket gets
    `interrupted` with what was sent, no more audio follows, and the reply is stored interrupted."""
    fakes.llm.hold_after = HELD_AFTER
    with client.websocket_connect("/ws/voice") as ws:
        sid = ws.receive_json()["session_id"]
        ws.send_json({"type": "text", "text": "hello"})
        receive_until(ws, "audio.start")
        assert client.post(f"/api/sessions/{sid}/cancel").status_code == 200
        got = receive_until(ws, "interrupted")
        assert got.first("interrupted")["spoken_text"].startswith("That sounds hard.")
        ws.send_json({"type": "text", "text": "still there?"})  # the connection goes on
        fakes.llm.release.set()
        receive_until(ws, "metrics")
    assert client.get(f"/api/sessions/{sid}/history").json()["turns"][1]["interrupted"] is True


def test_cancel_with_nothing_running_or_someone_elses_session(tmp_path: Path) -> None:
    """Nothing being generated: 409 nothing_to_cancel; an unknown or another key's session: 404."""
    settings = make_settings(tmp_path, auth__api_keys=["k1", "k2"])
    with TestClient(create_app(settings, models=FakeModels().service(settings))) as api:
        sid = api.post("/api/sessions", json={}, headers={"X-API-Key": "k1"}).json()["id"]
        idle = api.post(f"/api/sessions/{sid}/cancel", headers={"X-API-Key": "k1"})
        assert idle.status_code == 409 and idle.json()["error"]["code"] == "nothing_to_cancel"
        other = api.post(f"/api/sessions/{sid}/cancel", headers={"X-API-Key": "k2"})
        assert other.status_code == 404 and other.json()["error"]["code"] == "session_not_found"
        assert api.post("/api/sessions/nope/cancel", headers={"X-API-Key": "k1"}).status_code == 404
