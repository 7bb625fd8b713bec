"""The mentor dataset and the style measures shared by train_lora.py, eval_mentor.py and their tests.

Pure Python (no torch): reading ``data/mentor/*.jsonl``, turning a conversation into (history, user turn,
reply) examples, and the small speakability checks used to judge replies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.engines.protocols import EMOTIONS
from backend.store.records import HistoryTurn


@dataclass(frozen=True)
class Exchange:
    """One training or evaluation example: what came before, the user's turn, and the mentor's reply."""

    conversation_id: str
    index: int  # 0 for the first exchange of the conversation
    history: tuple[HistoryTurn, ...]
    user_text: str
    emotion: str
    reply: str
    persona: str | None = None  # None: the default persona
    memories: tuple[str, ...] = ()  # facts remembered from earlier sessions, given with the user turn


def load_conversations(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Conversations of one JSONL file, validated (alternating user/assistant turns, known emotions)."""
    conversations: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        turns = record.get("turns")
        if not isinstance(turns, list) or not turns or len(turns) % 2:
            raise ValueError(f"{path}:{number}: a conversation needs user/assistant pairs")
        for i, turn in enumerate(turns):
            role = "user" if i % 2 == 0 else "assistant"
            if turn.get("role") != role or not str(turn.get("text", "")).strip():
                raise ValueError(f"{path}:{number}: turn {i} should be a non-empty {role} turn")
            if role == "user" and turn.get("emotion") not in EMOTIONS:
                raise ValueError(f"{path}:{number}: turn {i} has an unknown emotion")
            memories = turn.get("memories", [])
            if not isinstance(memories, list) or not all(isinstance(m, str) and m.strip() for m in memories):
                raise ValueError(f"{path}:{number}: turn {i} memories must be a list of texts")
        if record.get("persona") is not None and not isinstance(record["persona"], str):
            raise ValueError(f"{path}:{number}: persona must be a persona id")
        conversations.append(record)
    return conversations[:limit] if limit is not None else conversations


def exchanges(conversations: list[dict[str, Any]]) -> Iterator[Exchange]:
    """Every assistant turn as an example whose history is all the turns before its user turn."""
    for record in conversations:
        turns = record["turns"]
        for k in range(0, len(turns), 2):
            history = tuple(HistoryTurn(role=t["role"], text=t["text"], emotion=t.get("emotion")) for t in turns[:k])
            yield Exchange(
                conversation_id=str(record["id"]),
                index=k // 2,
                history=history,
                user_text=turns[k]["text"],
                emotion=turns[k]["emotion"],
                reply=turns[k + 1]["text"],
                persona=record.get("persona"),
                memories=tuple(turns[k].get("memories", ())),
            )


# --- style measures ---------------------------------------------------------------------------------

_MARKUP = re.compile(
    r"(\*\*|__|`|^\s*#{1,6}\s|^\s*[-*+•]\s|^\s*\d{1,2}[.)]\s|\[[^\]]*\]\([^)]*\)|(?<!\w)\*[^*\n]+\*(?!\w))",
    re.M,
)
# Pictographs, dingbats, symbols and the joiners/selectors emoji are built from.
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d\u20e3]")
_SENTENCE = re.compile(r"[.!?]+(?=\s|$)")


def has_markdown_or_emoji(text: str) -> bool:
    """True if the reply holds markdown (bold, headings, bullets, numbered items, links, code, *actions*)
    or emoji: things a voice cannot say."""
    return bool(_MARKUP.search(text) or _EMOJI.search(text))


def word_count(text: str) -> int:
    return len(text.split())


def sentence_count(text: str) -> int:
    """Sentences ended by . ! or ?, plus a final unterminated one."""
    stripped = text.strip()
    if not stripped:
        return 0
    ends = len(_SENTENCE.findall(stripped))
    return ends + (0 if stripped[-1] in ".!?" else 1)


def asks_question(text: str) -> bool:
    return "?" in text


# --- persona adherence --------------------------------------------------------------------------------

# Words that show a reply doing what each persona's prompt asks for (eval_personas.py). The wellbeing mentor
# names feelings and suggests small kind steps; the study coach gives a study technique; the career mentor a
# career step. A reply "follows" a persona when it has one of that persona's words.
PERSONA_MARKERS: dict[str, tuple[str, ...]] = {
    "wellbeing": (
        "breath",
        "breathe",
        "breathing",
        "gentle",
        "kind to yourself",
        "rest",
        "comfort",
        "calm",
        "your body",
        "self-care",
        "look after yourself",
        "take care of yourself",
        "be kind",
        "slow down",
        "pause",
    ),
    "study-coach": (
        "study",
        "studying",
        "revise",
        "revision",
        "notes",
        "practice question",
        "practice questions",
        "past paper",
        "past papers",
        "flashcard",
        "flashcards",
        "timer",
        "minutes on",
        "study plan",
        "one topic",
        "chapter",
        "topic",
        "syllabus",
        "pomodoro",
        "session",
        "schedule",
        "homework",
    ),
    "career-mentor": (
        "career",
        "manager",
        "cv",
        "resume",
        "feedback",
        "skill",
        "skills",
        "network",
        "networking",
        "promotion",
        "interview",
        "linkedin",
        "role",
        "professional",
        "mentor",
        "salary",
        "portfolio",
    ),
}
_MARKER_PATTERNS = {
    persona: re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.I)
    for persona, words in PERSONA_MARKERS.items()
}


def persona_markers(text: str) -> dict[str, int]:
    """How many of each persona's marker words a reply uses."""
    return {persona: len(pattern.findall(text)) for persona, pattern in _MARKER_PATTERNS.items()}
