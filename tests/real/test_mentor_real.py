"""Personas, memory and insights with the real embedded models (emotion + MiniLM, the LLM with its adapter),
through a real uvicorn and the REST API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from backend.config import REPO_ROOT
from backend.engines.model_service import ModelService
from backend.main import create_app
from scripts.common.mentor_data import exchanges, load_conversations
from scripts.evals.memory import MEMORY_SET, uses_fact
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


PERSONAS = ("wellbeing", "study-coach", "career-mentor")
VAL_USER_TURNS = 20  # the validation split's first user turns, whole conversations replayed over HTTP


def _closest_persona(models: ModelService) -> Callable[[str], str]:
    """Which persona's training replies (data/mentor/train.jsonl) a reply is closest to (MiniLM centroids), the
    whole-reply judge of scripts/evals/personas.py."""
    embedder = models.embedder
    assert embedder is not None
    by_persona: dict[str, list[str]] = {}
    for ex in exchanges(load_conversations(REPO_ROOT / "data/mentor/train.jsonl")):
        if not ex.memories:
            by_persona.setdefault(ex.persona or "wellbeing", []).append(ex.reply)
    names = sorted(by_persona)
    centroids = np.stack([embedder.embed(by_persona[n]).mean(axis=0) for n in names])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return lambda reply: names[int((embedder.embed([reply]) @ centroids.T).argmax())]


def test_each_persona_answers_as_itself(api: httpx.Client, models: ModelService) -> None:
    """The validation split's first conversations replayed over HTTP once per persona (a session created with
    it, its user turns sent in order): for each persona, its own replies read like its training replies more
    often than the other personas' replies do (the persona changes what is said, not only the voice)."""
    closest = _closest_persona(models)
    conversations = load_conversations(REPO_ROOT / "data/mentor/val.jsonl")
    turns: list[tuple[int, str]] = []
    for n, record in enumerate(conversations):
        turns += [(n, t["text"]) for t in record["turns"] if t["role"] == "user"]
    turns = turns[:VAL_USER_TURNS]
    judged: dict[str, list[str]] = {}
    for persona in PERSONAS:
        sessions = {n: api.post("/api/sessions", json={"persona": persona}).json()["id"] for n, _ in turns}
        replies = [_chat(api, text=text, session_id=sessions[n])["response"] for n, text in turns]
        judged[persona] = [closest(r) for r in replies]
    share = {p: {q: judged[p].count(q) / len(turns) for q in PERSONAS} for p in PERSONAS}
    for persona in PERSONAS:
        for other in PERSONAS:
            if other != persona:
                assert share[persona][persona] > share[other][persona], share


# Conversations of scripts/evals/memory.py's set whose fact the shipped adapter recalls and uses (its report
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
