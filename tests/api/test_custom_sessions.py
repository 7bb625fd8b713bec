"""Custom session ids and the sessions list, through the real HTTP and WebSocket API (fake models)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from tests.api.wsutil import receive_until
from tests.conftest import make_settings
from tests.fakes import FakeModels

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


def test_post_sessions_with_your_own_id(client: TestClient) -> None:
    """POST /api/sessions {"session_id"} creates that session; the same id again is 409 session_exists; an
    invalid id is 422 naming the field."""
    made = client.post("/api/sessions", json={"session_id": "my-id_1", "user_id": "alice"})
    assert made.status_code == 201 and made.json()["id"] == "my-id_1" and made.json()["user_id"] == "alice"
    again = client.post("/api/sessions", json={"session_id": "my-id_1"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "session_exists"
    for bad in ("has space", "", "x" * 65, "../etc"):
        refused = client.post("/api/sessions", json={"session_id": bad})
        assert refused.status_code == 422, bad
        assert "session_id" in refused.json()["error"]["message"]


def test_text_chat_with_an_unknown_custom_id_creates_it(client: TestClient) -> None:
    """Text chat naming a session that does not exist yet creates it under that id, with the user id given;
    the next request continues it."""
    first = client.post("/api/text-chat", json={"text": "hello", "session_id": "chat-42", "user_id": "bob"})
    assert first.status_code == 200 and first.json()["session_id"] == "chat-42"
    client.post("/api/text-chat", json={"text": "again", "session_id": "chat-42"})
    turns = client.get("/api/sessions/chat-42/history").json()["turns"]
    assert [t["text"] for t in turns if t["role"] == "user"] == ["hello", "again"]
    session = client.get("/api/sessions").json()["sessions"][0]
    assert (session["id"], session["user_id"]) == ("chat-42", "bob")


def test_ws_session_start_with_an_unknown_custom_id_creates_it(client: TestClient) -> None:
    """session.start with an id that does not exist switches to a new session of that id (resumed false), which
    is listed at once; a text turn lands in it."""
    with client.websocket_connect("/ws/voice") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.start", "session_id": "voice-7", "user_id": "carol"})
        event = ws.receive_json()
        assert (event["session_id"], event["resumed"]) == ("voice-7", False)
        assert "voice-7" in [s["id"] for s in client.get("/api/sessions").json()["sessions"]]
        ws.send_json({"type": "text", "text": "hi there"})
        receive_until(ws, "metrics")
    assert client.get("/api/sessions/voice-7/history").json()["turns"][0]["text"] == "hi there"
    assert client.get("/api/sessions").json()["sessions"][0]["user_id"] == "carol"


def test_another_keys_custom_id_is_not_found(tmp_path: Path) -> None:
    """With auth on, a custom id taken by another key is 404 session_not_found on text chat and session.start
    (its existence is not revealed) and 409 on POST /api/sessions (the id cannot be had)."""
    settings = make_settings(tmp_path, auth__api_keys=["k1", "k2"])
    with TestClient(create_app(settings, models=FakeModels().service(settings))) as api:
        assert api.post("/api/sessions", json={"session_id": "shared"}, headers={"X-API-Key": "k1"}).status_code == 201
        chat = api.post("/api/text-chat", json={"text": "hi", "session_id": "shared"}, headers={"X-API-Key": "k2"})
        assert chat.status_code == 404 and chat.json()["error"]["code"] == "session_not_found"
        taken = api.post("/api/sessions", json={"session_id": "shared"}, headers={"X-API-Key": "k2"})
        assert taken.status_code == 409
        with api.websocket_connect("/ws/voice?api_key=k2") as ws:
            ws.receive_json()
            ws.send_json({"type": "session.start", "session_id": "shared"})
            assert receive_until(ws, "error").first("error")["code"] == "session_not_found"


def test_sessions_list_shows_created_updated_and_turn_count(client: TestClient) -> None:
    """Each listed session has its creation time, its last update (moved by each turn) and its turn count."""
    sid = client.post("/api/sessions", json={}).json()["id"]
    before = client.get("/api/sessions").json()["sessions"][0]
    assert before["turn_count"] == 0 and before["created_at"] == before["updated_at"]
    client.post("/api/text-chat", json={"text": "hello", "session_id": sid})
    after = client.get("/api/sessions").json()["sessions"][0]
    assert after["turn_count"] == 2
    assert datetime.fromisoformat(after["updated_at"]) > datetime.fromisoformat(after["created_at"])
    assert after["created_at"] == before["created_at"]
