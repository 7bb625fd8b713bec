"""The turn-end model on the real LLM (embedded SmolLM2 with the shipped adapter): the first clauses of the
benchmark's thinking-pause utterances read as unfinished, whole sentences as finished (vad.turn_end_threshold)."""

from __future__ import annotations

import pytest

from backend.config import LLMSettings, VADSettings
from backend.engines.llm.transformers import TransformersChatModel
from backend.engines.llm.transformers import load as load_transformers
from scripts.common.bench_speech import PAUSED, SENTENCES

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def chat() -> TransformersChatModel:
    return load_transformers(LLMSettings())


def test_unfinished_clauses_keep_the_hangover_and_sentences_end_sooner(chat: TransformersChatModel) -> None:
    threshold = VADSettings().turn_end_threshold
    assert threshold is not None
    unfinished = [chat.end_of_turn_probability(first) for first, _ in PAUSED]
    assert max(unfinished) < threshold / 2  # never a false end of turn at a thinking pause, with a margin
    finished = [chat.end_of_turn_probability(sentence) for sentence in SENTENCES]
    assert sum(p >= threshold for p in finished) >= 12  # most whole sentences end after the shorter hangover
    whole = [chat.end_of_turn_probability(f"{first} {second}") for first, second in PAUSED]
    assert min(whole) > max(unfinished)
