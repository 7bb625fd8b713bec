"""Opening clauses of spoken replies: the first words, chosen by the reply's guidance emotion, spoken as soon as
the end of speech is confirmed while the LLM continues them (pipeline.opening_clause, config/openers.yaml).

Pure and deterministic: the same message and history pick the same opener, and an opener the mentor used in
the recent history is not used again while another is left.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from backend.engines.protocols import EMOTIONS
from backend.mentor.prompt_builder import NEUTRAL

Openers = Mapping[str, tuple[str, ...]]


def load_openers(path: Path) -> dict[str, tuple[str, ...]]:
    """Read ``emotion: [opener, ...]`` from ``path``; every emotion needs at least one. Blocking (disk)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of emotion -> list of openers")
    openers: dict[str, tuple[str, ...]] = {}
    for key, value in raw.items():
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError(f"{path}: {key}: expected a list of openers")
        cleaned = tuple(" ".join(str(v).split()) for v in items if str(v).strip())
        if cleaned:
            openers[str(key).strip().lower()] = cleaned
    missing = [e for e in EMOTIONS if e not in openers]
    if missing:
        raise ValueError(f"{path}: no openers for {', '.join(missing)}")
    return openers


def _stem(text: str) -> str:
    return " ".join(text.lower().replace(",", " ").split())


def choose_opener(openers: Openers, emotion: str | None, user_text: str, recent_replies: Sequence[str] = ()) -> str:
    """The opener for a reply guided by ``emotion`` (unknown: neutral) to ``user_text``: one of that emotion's
    openers that none of ``recent_replies`` (the mentor's earlier replies) began with, picked by a hash of the
    message so that replies vary; when all were used, any of them."""
    choices = openers.get((emotion or NEUTRAL).lower()) or openers.get(NEUTRAL) or ()
    if not choices:
        return ""
    used = [_stem(r) for r in recent_replies]
    fresh = [o for o in choices if not any(u.startswith(_stem(o)) for u in used)] or list(choices)
    return fresh[zlib.crc32(" ".join(user_text.lower().split()).encode("utf-8")) % len(fresh)]


def continue_after(opener: str, continuation: str) -> str:
    """The reply text: the opener, then what the LLM wrote after it (one space between)."""
    if not opener:
        return continuation
    rest = continuation.lstrip()
    return f"{opener} {rest}" if rest else opener
