"""GET /api/sessions/{id}/insights through the real HTTP API (fake models): the emotional arc of every user
turn with its trend, the topics, and the summary updated after each turn from the previous one."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.store.insights import NewUserTurn
from tests.api.followups import new_event, services_of, set_event, settle
from tests.conftest import make_settings
from tests.fakes import FakeModels

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


def _say(client: TestClient, fakes: FakeModels, sid: str, text: str, emotion: str, confidence: float = 0.8) -> None:
    fakes.emotion.label, fakes.emotion.confidence = emotion, confidence
    assert client.post("/api/text-chat", json={"text": text, "session_id": sid}).status_code == 200


def test_insights_follow_the_conversation(client: TestClient, fakes: FakeModels) -> None:
    """After each turn the insights hold one arc point per user turn (emotion, confidence), the trend, the
    topics with their counts, and a summary that grows from the previous one (one update per turn)."""
    sid = "insight-1"
    _say(client, fakes, sid, "I have my driving test on Friday. I'm really nervous about it.", "anxious", 0.7)
    settle(client)
    first = client.get(f"/api/sessions/{sid}/insights").json()
    assert [(p["emotion"], p["confidence"]) for p in first["arc"]["points"]] == [("anxious", 0.7)]
    assert first["arc"]["trend"] == "too_few_turns" and first["updating"] is False
    assert first["summary"] == (
        "They talked about stress and study. They have their driving test on Friday. They're really nervous about it."
    )
    assert first["summary_updates"] == 1

    _say(client, fakes, sid, "My boss at work said I could take Friday off for it.", "neutral")
    _say(client, fakes, sid, "Thanks, I feel much better now.", "happy", 0.9)
    settle(client)
    later = client.get(f"/api/sessions/{sid}/insights").json()
    assert [p["emotion"] for p in later["arc"]["points"]] == ["anxious", "neutral", "happy"]
    assert later["arc"]["trend"] == "improving" and later["arc"]["slope"] > 0
    assert {t["topic"]: t["turns"] for t in later["topics"]} == {"study": 1, "stress": 1, "work": 1}
    assert later["summary_points"][0] == first["summary_points"][0]  # kept from the previous summary
    assert "Their boss at work said they could take Friday off for it." in later["summary"]
    assert later["summary_updates"] == 3
    turns = client.get(f"/api/sessions/{sid}/history").json()["turns"]
    assert later["summarized_through_turn_id"] == turns[-2]["id"]  # the last user turn


def test_insights_of_an_empty_session_and_errors(tmp_path: Path) -> None:
    """A session without turns has empty insights; an unknown or another key's session is 404."""
    settings = make_settings(tmp_path, auth__api_keys=["k1", "k2"])
    with TestClient(create_app(settings, models=FakeModels().service(settings))) as api:
        sid = api.post("/api/sessions", json={}, headers={"X-API-Key": "k1"}).json()["id"]
        empty = api.get(f"/api/sessions/{sid}/insights", headers={"X-API-Key": "k1"}).json()
        assert empty["arc"] == {"points": [], "trend": "too_few_turns", "slope": 0.0}
        assert (empty["summary"], empty["topics"], empty["summary_updates"]) == ("", [], 0)
        other = api.get(f"/api/sessions/{sid}/insights", headers={"X-API-Key": "k2"})
        assert other.status_code == 404 and other.json()["error"]["code"] == "session_not_found"
        assert api.get("/api/sessions/nope/insights", headers={"X-API-Key": "k1"}).status_code == 404


def test_the_insights_update_runs_after_the_reply_not_before(client: TestClient, fakes: FakeModels) -> None:
    """The summary is made off the turn's critical path: the reply is answered while the follow-up is still
    pending (``updating``), held here by the store, and the summary arrives after."""
    store = services_of(client).store
    gate = new_event(client)
    original = store.user_turns_after

    async def held(session_id: str, turn_id: int) -> list[NewUserTurn]:
        await gate.wait()
        return await original(session_id, turn_id)

    store.user_turns_after = held  # type: ignore[method-assign]
    try:
        reply = client.post("/api/text-chat", json={"text": "My exam is on Monday.", "session_id": "held"})
        assert reply.status_code == 200
        pending = client.get("/api/sessions/held/insights").json()
        assert pending["updating"] is True and pending["summary"] == ""
    finally:
        set_event(client, gate)
        store.user_turns_after = original  # type: ignore[method-assign]
    settle(client)
    done = client.get("/api/sessions/held/insights").json()
    assert done["updating"] is False and "Their exam is on Monday." in done["summary"]
