"""Session insights: the emotional arc and its trend, topics, and the incremental summary."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backend.mentor.insights import emotional_arc, third_person, topics_of, update_summary
from backend.store.insights import InsightState, NewUserTurn

pytestmark = pytest.mark.fast

T0 = datetime(2026, 11, 22, tzinfo=UTC)


def _turns(*labels: str) -> list[tuple[int, dict[str, object] | None, datetime]]:
    return [(i + 1, {"label": label, "confidence": 0.8}, T0) for i, label in enumerate(labels)]


@pytest.mark.parametrize(
    ("labels", "trend"),
    [
        (("sad", "anxious", "neutral", "happy"), "improving"),
        (("happy", "neutral", "sad"), "declining"),
        (("neutral", "neutral", "neutral"), "steady"),
        (("sad",), "too_few_turns"),
    ],
)
def test_the_arc_has_every_user_turn_and_its_trend(labels: tuple[str, ...], trend: str) -> None:
    """One point per user turn with its emotion and confidence, and the mood's direction over the session."""
    arc = emotional_arc(_turns(*labels))
    assert [p.emotion for p in arc.points] == list(labels)
    assert all(p.confidence == 0.8 for p in arc.points)
    assert arc.trend == trend


def test_turns_without_an_emotion_are_skipped() -> None:
    """Turns stored without an emotion (an unanswered turn at a disconnect) are not points of the arc."""
    arc = emotional_arc([(1, None, T0), (2, {"label": "sad", "confidence": 0.5}, T0)])
    assert [p.turn_id for p in arc.points] == [2] and arc.points[0].valence == pytest.approx(-0.45)


def test_topics_and_third_person() -> None:
    """Topics come from the words of a message; a user's sentence is told about them in the third person."""
    assert topics_of("My boss said my exam results matter for the job") == ["work", "study"]
    assert topics_of("Nice weather today") == []
    told = third_person("My boss keeps yelling at me, I am tired.")
    assert told == "Their boss keeps yelling at them, they are tired."
    assert third_person("I'm nervous about my test.") == "They're nervous about their test."


def test_summary_is_updated_from_the_previous_one_and_the_new_turns_only() -> None:
    """An update folds in only turns newer than the last one folded in, keeps the previous summary's points as
    they were (even one no turn given now could produce), and counts the update."""
    earlier = InsightState(
        summary="They talked about work. Their manager praised them in March.",
        points=[{"text": "Their manager praised them in March.", "kind": "person", "turn_id": 3}],
        topics={"work": 2},
        through_turn_id=3,
        updates=2,
    )
    turns = [
        NewUserTurn(1, "My sister Anna is getting married."),  # already folded in: ignored
        NewUserTurn(5, "I have my driving test on Friday."),
        NewUserTurn(7, "Thanks."),
    ]
    state = update_summary(earlier, turns)
    assert state.through_turn_id == 7 and state.updates == 3
    assert [p["text"] for p in state.points] == [
        "Their manager praised them in March.",
        "They have their driving test on Friday.",
    ]
    assert state.topics == {"work": 2, "study": 1}
    assert state.summary == (
        "They talked about work and study. Their manager praised them in March. They have their driving test on Friday."
    )
    assert "Anna" not in state.summary
    assert update_summary(state, turns) is state  # nothing new: unchanged


def test_a_new_point_replaces_the_one_it_updates_and_only_the_newest_are_kept() -> None:
    """A point that says the same as an earlier one replaces it; past MAX_POINTS the oldest go."""
    state = update_summary(InsightState(), [NewUserTurn(1, "My driving test is on Friday.")])
    state = update_summary(state, [NewUserTurn(2, "My driving test is on Friday afternoon now.")])
    assert [p["text"] for p in state.points] == ["Their driving test is on Friday afternoon now."]
    many = [NewUserTurn(10 + i, f"My friend number {w} is moving to a new city.") for i, w in enumerate("abcdef")]
    state = update_summary(state, many, similarity=lambda a, b: 1.0 if a == b else 0.0)
    assert len(state.points) == 4 and state.points[-1]["turn_id"] == 15
