"""Memory across sessions through the real HTTP and WebSocket API (fake models, a bag-of-words embedder):
what is kept, what reaches a later prompt, listing, deleting, ownership, and deleting a session. Memory crosses
sessions only for the same key and user id (tests/api/test_memory_isolation.py: without one it stays in its
session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.mentor.prompt_builder import MEMORY_INTRO
from tests.api import two_keys
from tests.api.followups import settle
from tests.api.two_keys import FACT, K1, K2, LATER
from tests.api.wsutil import receive_until
from tests.conftest import make_settings
from tests.fakes import FakeModels

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

fakes, api = two_keys.fakes, two_keys.api  # the fixtures: two keys, a bag-of-words embedder

ANN = "?user_id=ann"


def _guidance(fakes: FakeModels) -> str:
    return fakes.llm.prompts[-1][-2].content


def test_a_fact_from_one_session_reaches_the_prompt_of_another(api: TestClient, fakes: FakeModels) -> None:
    """What a user says in session 1 (a salient fact, not small talk) is kept for their key and user id and put
    into the guidance of a related turn in session 2; an unrelated turn gets no memory."""
    api.post("/api/text-chat", json={"text": f"Hi. {FACT} Thanks for listening.", "user_id": "ann"}, headers=K1)
    settle(api)
    memories = api.get(f"/api/memories{ANN}", headers=K1).json()
    assert [m["text"] for m in memories["memories"]] == [FACT] and memories["total"] == 1
    assert memories["memories"][0]["kind"] == "event"

    api.post("/api/text-chat", json={"text": LATER, "user_id": "ann"}, headers=K1)
    assert MEMORY_INTRO in _guidance(fakes) and f'"{FACT}"' in _guidance(fakes)
    weather = {"text": "The weather is grey today.", "user_id": "ann"}
    timings = api.post("/api/text-chat", json=weather, headers=K1).json()["timings"]
    assert MEMORY_INTRO not in _guidance(fakes) and "memory_s" in timings


def test_memories_are_per_key_and_per_user_id(api: TestClient, fakes: FakeModels) -> None:
    """Another key neither sees nor gets a key's memories, even naming the same user id; with user ids, one key
    keeps its users apart."""
    api.post("/api/text-chat", json={"text": FACT, "user_id": "ann"}, headers=K1)
    api.post("/api/text-chat", json={"text": "I want to learn to swim this summer.", "user_id": "u2"}, headers=K1)
    settle(api)
    assert api.get("/api/memories", headers=K2).json()["memories"] == []
    assert api.get(f"/api/memories{ANN}", headers=K2).json()["memories"] == []
    api.post("/api/text-chat", json={"text": LATER, "user_id": "ann"}, headers=K2)
    assert MEMORY_INTRO not in _guidance(fakes)
    assert [m["text"] for m in api.get("/api/memories?user_id=u2", headers=K1).json()["memories"]] == [
        "I want to learn to swim this summer."
    ]
    assert [m["text"] for m in api.get(f"/api/memories{ANN}", headers=K1).json()["memories"]] == [FACT]
    bad = api.get("/api/memories?user_id=not%20valid", headers=K1)
    assert bad.status_code == 422
    api.post("/api/text-chat", json={"text": LATER, "user_id": "u2"}, headers=K1)  # ann's fact, not u2's
    assert MEMORY_INTRO not in _guidance(fakes)


def test_deleting_memories(api: TestClient, fakes: FakeModels) -> None:
    """A user deletes one memory (then it is no longer recalled) or all; another key's memory is 404
    memory_not_found and stays."""
    api.post(
        "/api/text-chat", json={"text": f"{FACT} I want to run a marathon next year.", "user_id": "ann"}, headers=K1
    )
    settle(api)
    listed = api.get(f"/api/memories{ANN}", headers=K1).json()["memories"]
    assert len(listed) == 2
    anna = next(m for m in listed if "Anna" in m["text"])
    theirs = api.delete(f"/api/memories/{anna['id']}{ANN}", headers=K2)
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "memory_not_found"
    assert api.delete(f"/api/memories/{anna['id']}", headers=K1).status_code == 404  # not without the user id
    assert api.delete(f"/api/memories/{anna['id']}{ANN}", headers=K1).status_code == 204
    assert api.delete(f"/api/memories/{anna['id']}{ANN}", headers=K1).status_code == 404
    api.post("/api/text-chat", json={"text": LATER, "user_id": "ann"}, headers=K1)
    assert FACT not in _guidance(fakes)
    settle(api)
    left = api.get(f"/api/memories{ANN}", headers=K1).json()["total"]  # the marathon, and LATER (about a person)
    assert left == 2 and api.delete("/api/memories", headers=K1).json() == {"deleted": 0}  # not without the user id
    assert api.delete(f"/api/memories{ANN}", headers=K1).json() == {"deleted": left}
    assert api.get(f"/api/memories{ANN}", headers=K1).json()["total"] == 0


def test_deleting_a_session_deletes_what_was_learned_in_it(api: TestClient) -> None:
    """Memories learned in a deleted session are gone; those of the user's other sessions stay."""
    gone = api.post("/api/text-chat", json={"text": FACT, "user_id": "ann"}, headers=K1).json()["session_id"]
    api.post("/api/text-chat", json={"text": "My dog Biscuit is sick this week.", "user_id": "ann"}, headers=K1)
    settle(api)
    assert api.get(f"/api/memories{ANN}", headers=K1).json()["total"] == 2
    assert api.delete(f"/api/sessions/{gone}", headers=K1).status_code == 204
    assert [m["text"] for m in api.get(f"/api/memories{ANN}", headers=K1).json()["memories"]] == [
        "My dog Biscuit is sick this week."
    ]


def test_voice_sessions_remember_too(api: TestClient, fakes: FakeModels) -> None:
    """A spoken (here: typed over /ws/voice) fact is remembered and recalled over /ws/voice in a later session
    of the same user id; saying it again refreshes it instead of keeping a copy."""
    with api.websocket_connect("/ws/voice?api_key=k1") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.start", "user_id": "dana"})
        ws.receive_json()
        ws.send_json({"type": "text", "text": FACT})
        receive_until(ws, "metrics")
    settle(api)
    api.post("/api/text-chat", json={"text": FACT, "user_id": "dana"}, headers=K1)
    settle(api)
    assert api.get("/api/memories?user_id=dana", headers=K1).json()["total"] == 1
    with api.websocket_connect("/ws/voice?api_key=k1") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.start", "session_id": "dana-2", "user_id": "dana"})
        ws.receive_json()
        ws.send_json({"type": "text", "text": LATER})
        receive_until(ws, "metrics")
    assert f'"{FACT}"' in _guidance(fakes)


def test_memory_is_off_without_an_embedder(tmp_path: Path) -> None:
    """An emotion engine without sentence embeddings turns memory off: turns work, nothing is kept."""
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, models=FakeModels().service(settings))) as client:
        assert client.post("/api/text-chat", json={"text": FACT}).status_code == 200
        settle(client)
        assert client.get("/api/memories").json()["total"] == 0
