"""A session's insights: its emotional arc, its topics and a short summary kept up to date turn by turn.

The summary is incremental: ``update_summary`` takes the previous state and only the user turns since, turns
their salient facts (memory.py) into third-person points, lets a new point replace an older one that says the
same, keeps the newest few, and adds the new turns' topics to the running counts. It never re-reads the whole
conversation. It is extractive on purpose: the embedded 135M mentor model, asked to summarise, answers the user
instead (or invents details without the adapter), so the summary is built from what the user actually said.
Pure functions; the pipeline runs them after a turn, off its critical path (pipeline/follow_up.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from backend.mentor.memory import salient_facts
from backend.store.insights import InsightState, NewUserTurn

MAX_POINTS = 4
MAX_TOPICS_IN_SUMMARY = 3
SAME_POINT = 0.5  # word overlap (Jaccard) at which a new point replaces an old one
TREND_SLOPE = 0.05  # valence change per user turn that counts as a trend

# How pleasant each emotion is, -1..1: the arc's y axis.
VALENCE: dict[str, float] = {
    "happy": 1.0,
    "surprised": 0.3,
    "neutral": 0.0,
    "anxious": -0.7,
    "angry": -0.8,
    "sad": -0.9,
}
TOPICS: dict[str, tuple[str, ...]] = {
    "work": (
        "work",
        "job",
        "boss",
        "manager",
        "colleague",
        "coworker",
        "office",
        "promotion",
        "career",
        "meeting",
        "fired",
        "salary",
        "interview",
        "team",
    ),
    "study": (
        "exam",
        "exams",
        "test",
        "study",
        "studying",
        "school",
        "class",
        "homework",
        "university",
        "college",
        "grades",
        "revision",
        "teacher",
        "essay",
        "thesis",
        "course",
        "lecture",
    ),
    "family": (
        "mom",
        "mum",
        "mother",
        "dad",
        "father",
        "parents",
        "sister",
        "brother",
        "family",
        "son",
        "daughter",
        "kids",
        "children",
        "grandma",
        "grandmother",
        "grandpa",
        "aunt",
        "uncle",
        "cousin",
        "wedding",
    ),
    "relationships": (
        "partner",
        "boyfriend",
        "girlfriend",
        "wife",
        "husband",
        "dating",
        "date",
        "breakup",
        "broke up",
        "divorce",
        "relationship",
        "love",
    ),
    "friends": ("friend", "friends", "roommate", "flatmate", "lonely", "party"),
    "health": (
        "sick",
        "ill",
        "doctor",
        "hospital",
        "pain",
        "health",
        "surgery",
        "diagnosis",
        "body",
        "exercise",
        "run",
        "running",
        "marathon",
        "gym",
        "eating",
    ),
    "sleep": ("sleep", "sleeping", "insomnia", "tired", "awake", "nightmare", "exhausted", "night"),
    "money": ("money", "rent", "debt", "bills", "pay", "afford", "savings", "loan", "budget"),
    "loss": ("died", "passed away", "funeral", "grief", "miss him", "miss her", "lost my"),
    "home": ("moving", "move", "house", "apartment", "flat", "city", "neighbour", "neighbor"),
    "self-esteem": ("confidence", "confident", "failure", "worthless", "not good enough", "ashamed", "proud"),
    "stress": ("stress", "stressed", "overwhelmed", "pressure", "deadline", "anxious", "worried", "nervous"),
}
_TOPIC_PATTERNS = {
    topic: re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b") for topic, words in TOPICS.items()
}
_THIRD_PERSON = (
    (re.compile(r"\bI am\b"), "they are"),
    (re.compile(r"\bI was\b"), "they were"),
    (re.compile(r"\bI'm\b|\bIm\b"), "they're"),
    (re.compile(r"\bI've\b"), "they've"),
    (re.compile(r"\bI'd\b"), "they'd"),
    (re.compile(r"\bI'll\b"), "they'll"),
    (re.compile(r"\bI\b"), "they"),
    (re.compile(r"\b[Mm]yself\b"), "themselves"),
    (re.compile(r"\b[Mm]ine\b"), "theirs"),
    (re.compile(r"\b[Mm]y\b"), "their"),
    (re.compile(r"\b[Mm]e\b"), "them"),
)
_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE_START = re.compile(r"([.!?]\s+)([a-z])")
_STOP = frozenset(
    re.findall(
        r"\w+",
        "a an the and or but so to of in on at for with about is are was were be been it this that they their them "
        "i my me am have has had do does did not just really very",
    )
)

Trend = Literal["improving", "declining", "steady", "too_few_turns"]
Similarity = Callable[[str, str], float]


@dataclass(frozen=True)
class ArcPoint:
    turn_id: int
    emotion: str
    confidence: float
    valence: float  # VALENCE of the emotion, weighted by its confidence
    at: datetime
    safety: dict[str, Any] | None = None  # {category, level} when the crisis protocol answered this turn


@dataclass(frozen=True)
class Arc:
    points: list[ArcPoint]
    trend: Trend
    slope: float  # valence change per user turn (least squares)


def emotional_arc(
    turns: Sequence[tuple[int, dict[str, Any] | None, datetime]],
    safety: dict[int, dict[str, Any]] | None = None,
) -> Arc:
    """The arc of the user turns given as (turn id, stored emotion, time): emotion and confidence per turn, and
    whether the mood is improving, declining or steady over them. ``safety``: the flags of turns the crisis
    protocol answered, by turn id, marked on their points."""
    points: list[ArcPoint] = []
    flags = safety or {}
    for turn_id, emotion, at in turns:
        if not emotion or not isinstance(emotion.get("label"), str):
            continue
        label = emotion["label"]
        confidence = float(emotion.get("confidence") or 0.0)
        valence = round(VALENCE.get(label, 0.0) * confidence, 3)
        flag = flags.get(turn_id)
        marked = {"category": flag.get("category"), "level": flag.get("level")} if flag else None
        points.append(ArcPoint(turn_id, label, round(confidence, 3), valence, at, marked))
    if len(points) < 2:
        return Arc(points, "too_few_turns", 0.0)
    n = len(points)
    mean_x, mean_y = (n - 1) / 2, sum(p.valence for p in points) / n
    slope = sum((i - mean_x) * (p.valence - mean_y) for i, p in enumerate(points)) / sum(
        (i - mean_x) ** 2 for i in range(n)
    )
    trend: Trend = "improving" if slope > TREND_SLOPE else "declining" if slope < -TREND_SLOPE else "steady"
    return Arc(points, trend, round(slope, 3))


def topics_of(text: str) -> list[str]:
    """The topics a user's message touches (TOPICS keywords), in TOPICS order."""
    lower = text.lower().replace("’", "'")
    return [topic for topic, pattern in _TOPIC_PATTERNS.items() if pattern.search(lower)]


def third_person(text: str) -> str:
    """A user's first-person sentence about them: "My boss yells at me." -> "Their boss yells at them."."""
    out = text
    for pattern, repl in _THIRD_PERSON:
        out = pattern.sub(repl, out)
    out = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), out)
    return out[:1].upper() + out[1:]


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the content words of two texts (0..1)."""
    wa = set(_WORD.findall(a.lower())) - _STOP
    wb = set(_WORD.findall(b.lower())) - _STOP
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def summary_text(points: Sequence[dict[str, Any]], topics: dict[str, int]) -> str:
    """The summary read by people: the main topics, then the points, newest last."""
    top = [t for t, _ in sorted(topics.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_TOPICS_IN_SUMMARY]]
    parts = []
    if top:
        named = top[0] if len(top) == 1 else ", ".join(top[:-1]) + " and " + top[-1]
        parts.append(f"They talked about {named}.")
    parts.extend(str(p["text"]) for p in points)
    return " ".join(parts)


def update_summary(
    state: InsightState,
    new_turns: Sequence[NewUserTurn],
    *,
    similarity: Similarity | None = None,
    same_point: float = SAME_POINT,
) -> InsightState:
    """The state after folding in ``new_turns`` (user turns newer than ``state.through_turn_id``).

    New points come from the turns' salient facts in the third person; one whose ``similarity`` to an earlier
    point (default: word overlap) reaches ``same_point`` replaces it; the newest MAX_POINTS are kept. Topics add
    up. The previous summary's points are kept as they were, so the update never re-reads old turns."""
    fresh = [t for t in new_turns if t.id > state.through_turn_id]
    if not fresh:
        return state
    same = similarity or word_overlap
    points = [dict(p) for p in state.points]
    topics = dict(state.topics)
    for turn in fresh:
        for topic in topics_of(turn.text):
            topics[topic] = topics.get(topic, 0) + 1
        for fact in salient_facts(turn.text):
            text = third_person(fact.text)
            points = [p for p in points if same(str(p["text"]), text) < same_point]
            points.append({"text": text, "kind": fact.kind, "turn_id": turn.id})
    points = points[-MAX_POINTS:]
    return replace(
        state,
        summary=summary_text(points, topics),
        points=points,
        topics=topics,
        through_turn_id=max(t.id for t in fresh),
        updates=state.updates + 1,
    )
