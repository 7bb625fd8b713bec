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
