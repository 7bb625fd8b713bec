"""build_messages: the prompt shared by serving and LoRA training."""

from __future__ import annotations

import pytest

from backend.config import MentorSettings
from backend.engines.protocols import EMOTIONS
from backend.mentor.prompt_builder import MentorPrompt, build_messages, load_mentor_prompt
from backend.store.records import HistoryTurn

pytestmark = pytest.mark.fast

PROMPT = MentorPrompt("You are a calm mentor.", {e: f"Guidance for {e}." for e in EMOTIONS})


def words(text: str) -> int:
    return len(text.split())


def history(n_pairs: int) -> list[HistoryTurn]:
    turns: list[HistoryTurn] = []
    for i in range(n_pairs):
        turns.append(HistoryTurn("user", f"question number {i} " + "pad " * 10))
        turns.append(HistoryTurn("assistant", f"answer number {i} " + "pad " * 10))
    return turns


def test_system_then_history_then_guidance_then_user() -> None:
    """Messages are the system prompt, the history in order, the emotion guidance, then the new user text."""
    msgs = build_messages(PROMPT, history(2), "  I feel sad.  ", "sad")
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user", "assistant", "system", "user"]
    assert msgs[0].content == "You are a calm mentor."
    assert msgs[1].content.startswith("question number 0")
    assert msgs[-2].content == "Guidance for sad."
    assert msgs[-1].content == "I feel sad."


def test_prefix_is_stable_across_emotions_and_turns() -> None:
    """Whatever the emotion, the messages before the guidance are the same: the KV prefix cache can reuse them,
    and the next turn's prompt starts with this turn's (system + history + the exchange just made)."""
    sad = build_messages(PROMPT, history(2), "now", "sad")
    happy = build_messages(PROMPT, history(2), "now", "happy")
    assert sad[:-2] == happy[:-2] and sad[-2] != happy[-2]
    nxt = build_messages(PROMPT, [*history(2), HistoryTurn("user", "now"), HistoryTurn("assistant", "ok")], "x", None)
    assert nxt[: len(sad) - 2] == sad[:-2]


@pytest.mark.parametrize("emotion", [None, "confused", ""])
def test_unknown_emotion_falls_back_to_neutral(emotion: str | None) -> None:
    """None, empty or unknown emotions get the neutral guidance."""
    assert build_messages(PROMPT, [], "hi", emotion)[-2].content == "Guidance for neutral."


def test_each_emotion_gets_its_guidance() -> None:
    """Every emotion of EMOTIONS selects its own guidance (case-insensitively)."""
    for e in EMOTIONS:
        assert build_messages(PROMPT, [], "hi", e.upper())[-2].content == f"Guidance for {e}."


def test_budget_keeps_newest_pairs_and_always_system_and_user() -> None:
    """A tight budget drops the oldest exchanges whole; the newest ones, system and user message stay."""
    full = build_messages(PROMPT, history(6), "now", "sad", count_tokens=words, max_prompt_tokens=10_000)
    assert len(full) == 15
    trimmed = build_messages(PROMPT, history(6), "now", "sad", count_tokens=words, max_prompt_tokens=100)
    assert trimmed[0].role == "system" and trimmed[-1].content == "now"
    assert trimmed[-2].content == "Guidance for sad."
    middle = trimmed[1:-2]
    assert 0 < len(middle) < 12 and len(middle) % 2 == 0
    assert middle[0].role == "user"
    assert middle[-1].content.startswith("answer number 5")
    assert all(m.role == ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(middle))
    tiny = build_messages(PROMPT, history(6), "now", "sad", count_tokens=words, max_prompt_tokens=1)
    assert [m.role for m in tiny] == ["system", "system", "user"]


def test_history_starting_with_a_reply_is_not_left_dangling() -> None:
    """A leading assistant turn (its question was trimmed earlier) is dropped; empty turns are skipped."""
    turns = [HistoryTurn("assistant", "orphan"), HistoryTurn("user", "q"), HistoryTurn("assistant", "  ")]
    msgs = build_messages(PROMPT, turns, "now", None)
    assert [m.content for m in msgs[1:]] == ["q", "Guidance for neutral.", "now"]


def test_deterministic() -> None:
    """The same inputs give the same messages."""
    args = (PROMPT, history(3), "now", "happy")
    assert build_messages(*args, count_tokens=words) == build_messages(*args, count_tokens=words)


def test_shipped_prompt_files_load() -> None:
    """config/mentor_prompt.txt and config/emotion_guidance.yaml load with guidance for every emotion."""
    prompt = load_mentor_prompt(MentorSettings())
    assert "mentor" in prompt.system_prompt.lower()
    assert set(EMOTIONS) <= set(prompt.emotion_guidance)
    assert all(0 < len(g.split()) < 40 for g in prompt.emotion_guidance.values())
