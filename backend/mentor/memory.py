"""What a mentor remembers: which sentences of a user are worth keeping, and which kept ones fit a new turn.

``salient_facts`` keeps the sentences a mentor would note (events, people, worries, goals), not every
sentence: first-person statements of at least four words that name an event or a time, a person, a worry with
its object, or a goal. ``recall`` picks the memories closest to the user's message (cosine of L2-normalised
sentence embeddings) above a threshold, leaving out what the prompt's history already says. Pure functions;
the embeddings come from the engine (TextEmbedder) and the rows from the store (store/memories.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from backend.store.memories import MemoryVectors

Kind = Literal["event", "person", "goal", "worry"]
KINDS: tuple[Kind, ...] = ("event", "person", "goal", "worry")  # priority when a sentence is several
MIN_WORDS = 4
MAX_CHARS = 200

_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_FIRST_PERSON = re.compile(r"\b(i|i'm|im|i've|i'd|i'll|my|me|we|we're|our|us|mine|myself)\b")
_PERSON = re.compile(
    r"\b(mom|mum|mother|dad|father|parents?|sister|brother|siblings?|wife|husband|partner|boyfriend|girlfriend"
    r"|fianc[eé]e?|friends?|boss|manager|teacher|professor|tutor|coach|son|daughter|kids?|children|child|baby"
    r"|grandma|grandmother|grandpa|grandfather|grandparents|aunt|uncle|cousin|colleagues?|coworkers?"
    r"|co-workers?|team ?mates?|roommate|flatmate|neighbou?r|doctor|therapist|dog|cat|puppy)\b"
)
_EVENT = re.compile(
    r"\b(exams?|tests?|finals|interview|wedding|funeral|surgery|operation|appointment|deadline|presentation"
    r"|review|trip|holiday|vacation|moving|move house|new job|job offer|promotion|birthday|party|meeting"
    r"|competition|match|race|marathon|concert|recital|audition|graduation|diagnos\w*|broke up|breakup"
    r"|divorce|pregnan\w*|passed away|died|got fired|fired|laid off|quit|hired|accepted|rejected|speech"
    r"|thesis|dissertation|driving test|results|court|hospital)\b"
    rf"|\b(tomorrow|tonight|yesterday|next (week|month|year|{_DAYS})|this (week|weekend|month|{_DAYS})"
    rf"|on ({_DAYS})|in (a|one|two|three|four|a few|\d+) (days?|weeks?|months?)|last (week|month|night|year)"
    rf"|in ({_MONTHS}))\b"
)
_WORRY = re.compile(
    r"\b(worr(y|ied|ying)|afraid|scared|nervous|anxious|stress(ed|ful)?|terrified|dread(ing)?|panic(king)?"
    r"|fear|can't stop thinking|cannot stop thinking|overwhelmed|freaking out)\b"
)
_WORRY_OBJECT = re.compile(r"\b(about|that|of|for|because)\b")
_GOAL = re.compile(
    r"\b(want to|wanna|hope to|hoping to|plan to|planning to|my goal|goal is|trying to|going to|decided to"
    r"|would like to|i'd like to|dream of|dream is|aim to|saving up|save up|learn to|learning to)\b"
)
_BACK_REFERENCE = re.compile(r"\b(about|of|for) (it|this|that|them)\b")
_NAME = re.compile(r"(?<=\s)([A-Z][a-z]{2,})\b")
_NOT_NAMES = frozenset(d.capitalize() for d in (*_DAYS.split("|"), *_MONTHS.split("|"))) | {"I", "Okay", "English"}
_FILLER = re.compile(r"^(?:(?:um+|uh+|er+|well|so|like|yeah|yes|no|okay|ok|oh|hey|and|but)\b[,\s]*)+", re.I)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*")


@dataclass(frozen=True)
class Fact:
    text: str
    kind: Kind


def kinds_of(sentence: str) -> list[Kind]:
    """What a sentence says that a mentor would keep, in priority order (empty: nothing worth keeping)."""
    lower = sentence.lower().replace("’", "'")
    if len(lower.split()) < MIN_WORDS or not _FIRST_PERSON.search(lower) or lower.rstrip().endswith("?"):
        return []
    found: set[Kind] = set()
    if _EVENT.search(lower):
        found.add("event")
    if _PERSON.search(lower) or any(n not in _NOT_NAMES for n in _NAME.findall(sentence)):
        found.add("person")
    if _GOAL.search(lower):
        found.add("goal")
    if _WORRY.search(lower) and (found or _WORRY_OBJECT.search(lower)):
        found.add("worry")
    return [k for k in KINDS if k in found]


def _clean(sentence: str) -> str:
    text = _FILLER.sub("", " ".join(sentence.split())).strip(" ,;-")
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS].rsplit(" ", 1)[0].rstrip(",;") + "…"
    if text and text[-1] not in ".!?…":
        text += "."
    return text[:1].upper() + text[1:]


def salient_facts(text: str) -> list[Fact]:
    """The sentences of a user's message worth remembering, cleaned (fillers off, capitalised, ended)."""
    facts: list[Fact] = []
    for sentence in _SENTENCES.split(text.strip()):
        kinds = kinds_of(sentence)
        cleaned = _clean(sentence) if kinds else ""
        if not cleaned or len(cleaned.split()) < MIN_WORDS:
            continue
        if kinds == ["worry"] and _BACK_REFERENCE.search(cleaned.lower()):
            if facts:  # "I'm nervous about it": a worry about the fact just said, kept with it
                facts[-1] = Fact(_clean(f"{facts[-1].text} {cleaned}"), facts[-1].kind)
            continue
        facts.append(Fact(cleaned, kinds[0]))
    return facts


@dataclass(frozen=True)
class Recalled:
    id: int
    text: str
    similarity: float
    session_id: str


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def recall(
    query: NDArray[np.float32],
    vectors: MemoryVectors,
    *,
    top_k: int,
    min_similarity: float,
    already_said: Sequence[str] = (),
) -> list[Recalled]:
    """The ``top_k`` memories most similar to ``query`` (an L2-normalised embedding) with a cosine of at least
    ``min_similarity``, best first; memories whose words are already in ``already_said`` (the history the
    prompt carries) are left out. One matrix-vector product: about 1 ms at 10,000 memories."""
    if top_k <= 0 or not len(vectors) or vectors.matrix.shape[1] != query.shape[-1]:
        return []
    scores = vectors.matrix @ query.astype(np.float32).reshape(-1)
    candidates = np.flatnonzero(scores >= min_similarity)
    if candidates.size == 0:
        return []
    said = [_norm(t) for t in already_said]
    ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
    out: list[Recalled] = []
    for i in ranked:
        text = vectors.texts[i]
        if any(_norm(text) in s for s in said):
            continue
        out.append(Recalled(int(vectors.ids[i]), text, float(scores[i]), vectors.session_ids[i]))
        if len(out) == top_k:
            break
    return out


def find_duplicate(embedding: NDArray[np.float32], vectors: MemoryVectors, threshold: float) -> int | None:
    """The id of a kept memory saying nearly the same (cosine >= ``threshold``), or None."""
    if not len(vectors) or vectors.matrix.shape[1] != embedding.shape[-1]:
        return None
    scores = vectors.matrix @ embedding.astype(np.float32).reshape(-1)
    best = int(np.argmax(scores))
    return int(vectors.ids[best]) if scores[best] >= threshold else None
