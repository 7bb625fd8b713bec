"""Personas, memory and insights with the real embedded models (emotion + MiniLM, the LLM with its adapter),
through a real uvicorn and the REST API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.engines.model_service import ModelService
from backend.main import create_app
from scripts.eval_memory import MEMORY_SET, uses_fact
from scripts.mentor_data import persona_markers
from tests.conftest import make_settings
from tests.live_server import LiveServer

pytestmark = [pytest.mark.real, pytest.mark.timeout(900)]

FOLLOW_UP_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelService:
    service = ModelService(make_settings(tmp_path_factory.mktemp("models")))
    service.load_all()
    return service


@pytest.fixture
def api(tmp_path: Path, models: ModelService) -> Iterator[httpx.Client]:
    with LiveServer(create_app(make_settings(tmp_path), models=models)) as live:
        with httpx.Client(base_url=live.http_url, timeout=120) as client:
            yield client


def _chat(api: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = api.post("/api/text-chat", json=body)
    assert resp.status_code == 200, resp.text
    reply: dict[str, Any] = resp.json()
    return reply


def _wait(condition: Callable[[], bool], what: str) -> None:
    """Poll the API until the background follow-up shows its result (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + FOLLOW_UP_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _insights(api: httpx.Client, sid: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/api/sessions/{sid}/insights").json()
    return body


# User turns on which the study coach and the career mentor answer differently with the shipped adapter
# (scripts/eval_personas.py on the validation split shows the rates over 30 turns).
PERSONA_TURNS = (
    "I have a job interview tomorrow. Any advice?",
    "I have a chemistry exam next week and I keep putting off revising.",
    "I feel stuck in my job and I don't know what to do next.",
    "I finally understand calculus! It just clicked today.",
)


def test_each_persona_answers_as_itself(api: httpx.Client) -> None:
    """The same messages answered as the study coach and as the career mentor: each persona's replies carry its
    own markers (a study technique, a career step) more often than the other persona's replies do."""
    replies = {
        persona: [_chat(api, text=text, persona=persona)["response"] for text in PERSONA_TURNS]
        for persona in ("study-coach", "career-mentor")
    }
    own = {p: sum(persona_markers(r)[p] > 0 for r in rs) for p, rs in replies.items()}
    other = {
        "study-coach": sum(persona_markers(r)["study-coach"] > 0 for r in replies["career-mentor"]),
        "career-mentor": sum(persona_markers(r)["career-mentor"] > 0 for r in replies["study-coach"]),
    }
    assert own["study-coach"] >= 2 and own["study-coach"] > other["study-coach"], replies
    assert own["career-mentor"] >= 2 and own["career-mentor"] > other["career-mentor"], replies


# Conversations of scripts/eval_memory.py's set whose fact the shipped adapter recalls and uses (its report
# in models/claritymentor-lora/eval_memory.json has all twenty).
MEMORY_ITEMS = (0, 2, 7)


def test_a_fact_from_session_one_is_used_in_session_two(api: httpx.Client) -> None:
    """Facts told in one session (MiniLM decides what is kept and what fits) reach a later session's prompt and
    its reply uses them; the same messages for a user without those memories get replies that do not."""
    items = [MEMORY_SET[i] for i in MEMORY_ITEMS]
    for n, item in enumerate(items):
        _chat(api, text=item.said, user_id=f"remembers-{n}")
    def all_kept() -> bool:
        return all(api.get(f"/api/memories?user_id=remembers-{n}").json()["total"] >= 1 for n in range(len(items)))

    _wait(all_kept, "the memories")
    with_memory = [_chat(api, text=item.later, user_id=f"remembers-{n}") for n, item in enumerate(items)]
    without = [_chat(api, text=item.later, user_id="new-user")["response"] for item in items]
    assert all("memory_s" in reply["timings"] for reply in with_memory)
    used = [uses_fact(reply["response"], item) for reply, item in zip(with_memory, items, strict=True)]
    assert sum(used) >= 2, with_memory
    assert sum(uses_fact(r, item) for r, item in zip(without, items, strict=True)) < sum(used), without


def test_insights_with_the_real_emotion_model(api: httpx.Client) -> None:
    """Two turns, worried then relieved: the arc has the real emotion model's labels (anxious, then happy: the
    mood improves), the topics and the summary hold what was said, in the third person."""
    sid = _chat(api, text="My driving test is on Friday and I'm really nervous about it.")["session_id"]
    _chat(api, text="I passed my driving test today! I am so happy.", session_id=sid)
    _wait(lambda: _insights(api, sid)["summary_updates"] == 2 and not _insights(api, sid)["updating"], "insights")
    insights = _insights(api, sid)
    assert [p["emotion"] for p in insights["arc"]["points"]] == ["anxious", "happy"], insights["arc"]
    assert insights["arc"]["trend"] == "improving"
    assert "study" in {t["topic"] for t in insights["topics"]}
    assert "Their driving test is on Friday and they're really nervous about it." in insights["summary"]
    assert "They passed their driving test today!" in insights["summary"]
