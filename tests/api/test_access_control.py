"""Access control between API keys where the other tests did not look: another key's DELETE /api/memories and
explicit user_id, cancelling another key's reply while it runs, and a custom session id another key holds."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.mentor.prompt_builder import MEMORY_INTRO
from tests.api import two_keys
from tests.api.followups import settle
from tests.api.two_keys import FACT, K1, K2, LATER
from tests.fakes import FakeModels
from tests.hardening.harness import wait_for

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

fakes, api = two_keys.fakes, two_keys.api  # the fixtures: two keys, a bag-of-words embedder



def _texts(api: TestClient, query: str = "", headers: dict[str, str] = K1) -> list[str]:
    return [m["text"] for m in api.get(f"/api/memories{query}", headers=headers).json()["memories"]]


def test_another_key_cannot_list_delete_or_recall_memories_even_naming_the_user_id(
    api: TestClient, fakes: FakeModels
) -> None:
    """k1 keeps a memory for itself and one for its user u2. k2 naming u2 lists nothing, deleting that memory
    by id (with or without user_id) is 404, DELETE /api/memories (with and without user_id) deletes nothing,
    and k2's own chat as u2 recalls nothing of k1's u2; k1's memories are all still there."""
    api.post("/api/text-chat", json={"text": FACT}, headers=K1)
    api.post("/api/text-chat", json={"text": FACT, "user_id": "u2"}, headers=K1)
    settle(api)
    assert _texts(api) == [FACT] and _texts(api, "?user_id=u2") == [FACT]
    u2_memory = api.get("/api/memories?user_id=u2", headers=K1).json()["memories"][0]["id"]

    assert _texts(api, "?user_id=u2", K2) == [] and _texts(api, "", K2) == []
    for query in ("", "?user_id=u2"):
        gone = api.delete(f"/api/memories/{u2_memory}{query}", headers=K2)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "memory_not_found"
        assert api.delete(f"/api/memories{query}", headers=K2).json() == {"deleted": 0}
    api.post("/api/text-chat", json={"text": LATER, "user_id": "u2"}, headers=K2)
    assert MEMORY_INTRO not in fakes.llm.prompts[-1][-2].content

    assert _texts(api) == [FACT] and _texts(api, "?user_id=u2") == [FACT]


def test_another_key_cannot_cancel_a_running_reply(api: TestClient, fakes: FakeModels) -> None:
    """While k1's reply is being generated, k2's cancel of that session is 404 session_not_found (as for a
    session that does not exist) and the reply goes on; k1's own cancel then stops it."""
    fakes.llm.hold_after = 4  # "That sounds hard." goes out, then the LLM waits
    sid = api.post("/api/sessions", json={}, headers=K1).json()["id"]
    result: dict[str, Any] = {}

    def chat() -> None:
        result["resp"] = api.post("/api/text-chat", json={"text": "hi", "session_id": sid}, headers=K1)

    worker = threading.Thread(target=chat)
    worker.start()
    try:
        wait_for(lambda: bool(fakes.llm.prompts), 10, "the generation to start")
        theirs = api.post(f"/api/sessions/{sid}/cancel", headers=K2)
        assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "session_not_found"
        assert theirs.json() == api.post("/api/sessions/no-such-session/cancel", headers=K2).json()
        assert not fakes.llm.stopped.is_set() and worker.is_alive()
        assert api.post(f"/api/sessions/{sid}/cancel", headers=K1).status_code == 200
    finally:
        fakes.llm.release.set()
        worker.join(10)
    assert result["resp"].json()["interrupted"] is True


def test_a_taken_custom_session_id_answers_the_same_409_whoever_holds_it(api: TestClient) -> None:
    """Custom ids share one namespace: creating an id that is taken answers 409 session_exists with the same
    body whether the caller or another key holds it, so the answer says the id is taken and nothing about
    whose it is; the other key can neither read nor use it (404)."""
    assert api.post("/api/sessions", json={"session_id": "shared"}, headers=K1).status_code == 201
    own = api.post("/api/sessions", json={"session_id": "shared"}, headers=K1)
    other = api.post("/api/sessions", json={"session_id": "shared"}, headers=K2)
    assert own.status_code == other.status_code == 409
    assert own.json() == other.json() and other.json()["error"]["code"] == "session_exists"
    assert api.get("/api/sessions/shared/history", headers=K2).status_code == 404
    assert api.delete("/api/sessions/shared", headers=K2).status_code == 404
    assert api.get("/api/sessions/shared/history", headers=K1).status_code == 200
