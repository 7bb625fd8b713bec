"""What is worth remembering of a user's message, and which memories fit a new one."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mentor.memory import find_duplicate, recall, salient_facts
from backend.store.memories import MemoryVectors
from tests.fakes import FakeEmbedder

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My sister Anna is getting married next month.", [("My sister Anna is getting married next month.", "event")]),
        ("My boss keeps yelling at me in meetings.", [("My boss keeps yelling at me in meetings.", "person")]),
        ("I want to learn to play the piano.", [("I want to learn to play the piano.", "goal")]),
        ("I'm worried about money.", [("I'm worried about money.", "worry")]),
        (
            "Um, so I have my driving test on Friday. I'm really nervous about it.",
            [("I have my driving test on Friday. I'm really nervous about it.", "event")],
        ),
    ],
)
def test_salient_sentences_are_kept_with_their_kind(text: str, expected: list[tuple[str, str]]) -> None:
    """Events (and times), people, goals and worries with their object are kept, cleaned (fillers off); a
    worry about "it" stays with the fact it is about."""
    assert [(f.text, f.kind) for f in salient_facts(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "Hello there.",
        "I feel sad today.",
        "I have been feeling really anxious lately.",
        "Thanks, that helps a lot.",
        "What should I do about my exam?",
        "Work was fine I guess.",
        "The weather is nice.",
    ],
)
def test_small_talk_feelings_and_questions_are_not_kept(text: str) -> None:
    """Not every sentence: greetings, thanks, bare feelings, questions and statements without a person, event,
    goal or worry are not memories."""
    assert salient_facts(text) == []


def _vectors(texts: list[str], embedder: FakeEmbedder) -> MemoryVectors:
    return MemoryVectors(
        ids=np.arange(1, len(texts) + 1, dtype=np.int64),
        matrix=embedder.embed(texts),
        texts=tuple(texts),
        session_ids=tuple("s1" for _ in texts),
        max_id=len(texts),
    )


def test_recall_takes_the_top_k_above_the_threshold_best_first() -> None:
    """Only memories at least ``min_similarity`` close to the message come back, at most ``top_k``, best first;
    nothing when none is close."""
    embedder = FakeEmbedder()
    kept = [
        "My driving test is on Friday.",
        "My sister Anna is getting married.",
        "My driving instructor is strict about the test.",
        "I want to run a marathon.",
    ]
    vectors = _vectors(kept, embedder)
    query = embedder.embed(["I am nervous about the driving test"])[0]
    found = recall(query, vectors, top_k=2, min_similarity=0.3)
    assert {m.text for m in found} == {kept[0], kept[2]}
    assert found[0].similarity >= found[1].similarity >= 0.3
    assert recall(query, vectors, top_k=1, min_similarity=0.3) == found[:1]
    assert recall(embedder.embed(["lovely weather"])[0], vectors, top_k=3, min_similarity=0.3) == []
    assert recall(query, vectors, top_k=0, min_similarity=0.0) == []


def test_recall_leaves_out_what_the_history_already_says() -> None:
    """A memory the prompt's history already holds (the same words, any punctuation) is not repeated."""
    embedder = FakeEmbedder()
    vectors = _vectors(["My driving test is on Friday."], embedder)
    query = embedder.embed(["the driving test"])[0]
    assert recall(query, vectors, top_k=3, min_similarity=0.1)
    said = ["Hi! my driving test is on friday, and I am scared"]
    assert recall(query, vectors, top_k=3, min_similarity=0.1, already_said=said) == []


def test_duplicates_are_found_by_similarity() -> None:
    """A new fact nearly identical to a kept one is a duplicate (its id); a different one is not."""
    embedder = FakeEmbedder()
    vectors = _vectors(["My driving test is on Friday.", "I want to run a marathon."], embedder)
    assert find_duplicate(embedder.embed(["My driving tests is on Friday!"])[0], vectors, 0.9) == 1
    assert find_duplicate(embedder.embed(["My cat is ill."])[0], vectors, 0.9) is None
