"""SentenceChunker: speakable chunks from a token stream, first clause early."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.pipeline.sentence_chunker import SentenceChunker

pytestmark = pytest.mark.fast

REPLY = (
    "I hear you, and that sounds really hard today. Mr. Smith said it costs 3.5 dollars, e.g. a coffee! "
    "*smiles warmly* **You** are not alone 😊. Would you like to talk about it?"
)


def whole(text: str, **kw: int) -> list[str]:
    c = SentenceChunker(**kw)
    return c.push(text) + c.flush()


def streamed(pieces: list[str], **kw: int) -> list[str]:
    c = SentenceChunker(**kw)
    out: list[str] = []
    for p in pieces:
        out += c.push(p)
    return out + c.flush()


def tokens(text: str) -> list[str]:
    """Split like an LLM tokenizer would: words with their leading space, punctuation apart."""
    return re.findall(r"\s*\w+|\s*[^\w\s]|\s+", text)


def test_chunks_of_a_reply() -> None:
    """Sentences split at . ! ?, not at decimals or abbreviations; first clause early; cleaned for speech."""
    assert whole(REPLY) == [
        "I hear you, and that sounds really hard today.",
        "Mr. Smith said it costs 3.5 dollars, e.g. a coffee!",
        "You are not alone.",
        "Would you like to talk about it?",
    ]


def test_first_clause_is_released_early() -> None:
    """The first chunk ends at a comma once it has enough words; later chunks wait for the sentence end."""
    c = SentenceChunker(first_chunk_min_words=4)
    assert c.push("That sounds really hard,") == []  # the comma is not confirmed until the next character
    assert c.push(" and") == ["That sounds really hard,"]
    assert c.push(" I am here, always, for you.") == []
    assert c.push(" Okay") == ["and I am here, always, for you."]
    assert c.flush() == ["Okay"]


def test_short_first_clause_waits() -> None:
    """A first clause with fewer words than the minimum is not emitted on its own."""
    assert whole("Oh no, that is sad. Tell me more.") == ["Oh no, that is sad.", "Tell me more."]


def test_dash_is_a_first_clause_boundary() -> None:
    """A spaced dash or an em dash ends the first chunk too (the dash itself is not spoken)."""
    assert whole("I know it is hard - but you can do this.")[0] == "I know it is hard"
    assert whole("I know it hurts a lot—yet it passes.")[0] == "I know it hurts a lot"


def test_token_stream_equals_whole_text() -> None:
    """Token-by-token and character-by-character streams give the same chunks as the whole text."""
    expected = whole(REPLY)
    assert streamed(tokens(REPLY)) == expected
    assert streamed(list(REPLY)) == expected


def test_long_text_without_boundary_is_cut_at_a_space() -> None:
    """Text longer than max_chunk_chars without punctuation is cut at a word boundary under the limit."""
    chunks = whole("word " * 100, max_chunk_chars=50)
    assert all(len(c) <= 50 for c in chunks)
    assert " ".join(chunks).split() == ["word"] * 100


def test_empty_chunks_are_skipped_and_flush_resets() -> None:
    """Chunks that are only emoji or stage directions are dropped; after flush the chunker starts fresh."""
    c = SentenceChunker()
    assert c.push("😊. *nods*. Fine, good, well then") == []
    assert c.flush() == ["Fine, good, well then"]
    assert c.pending == ""
    assert c.push("Right now, I think so. ") == ["Right now, I think so."]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(REPLY)), max_size=30))
def test_any_split_of_the_stream_gives_the_same_chunks(cuts: list[int]) -> None:
    """However the text is split into pieces, the chunks are those of the whole text."""
    bounds = [0, *sorted(cuts), len(REPLY)]
    pieces = [REPLY[a:b] for a, b in itertools.pairwise(bounds)]
    assert streamed(pieces) == whole(REPLY)


def test_first_chunk_is_cut_after_max_words_without_a_boundary() -> None:
    """With no clause or sentence boundary by the 7th word the first chunk ends there, whether the text arrives
    whole or word by word; later chunks still end at sentences, and a short first sentence is left alone."""
    text = "It can come from feeling like your mind is too busy to rest. What keeps it busy?"
    whole = SentenceChunker(3, first_chunk_max_words=7)
    expected = ["It can come from feeling like your", "mind is too busy to rest.", "What keeps it busy?"]
    assert whole.push(text) + whole.flush() == expected
    streamed = SentenceChunker(3, first_chunk_max_words=7)
    got = [c for word in text.split(" ") for c in streamed.push(word + " ")] + streamed.flush()
    assert got == expected
    short = SentenceChunker(3, first_chunk_max_words=7)
    assert short.push("That's so hard! What makes it harder now?") + short.flush() == [
        "That's so hard!",
        "What makes it harder now?",
    ]
