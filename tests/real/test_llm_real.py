"""The converted SmolLM2-135M-Instruct with the mentor prompt (loads real weights once per module)."""

from __future__ import annotations

import threading
import time

import pytest

from backend.config import LLMSettings, MentorSettings
from backend.engines.llm.prefix_cache import PrefixCache
from backend.engines.llm.transformers import TransformersChatModel
from backend.engines.llm.transformers import load as load_llm
from backend.mentor.prompt_builder import build_messages, load_mentor_prompt, next_prompt_prefix
from backend.mentor.speakable import clean_for_speech
from backend.store.records import HistoryTurn

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def llm() -> TransformersChatModel:
    return load_llm(LLMSettings(max_new_tokens=24))


def test_mentor_reply_to_sadness_is_speakable(llm: TransformersChatModel) -> None:
    """'I feel sad today.' with the mentor prompt streams a reply that has words after speech cleaning."""
    prompt = load_mentor_prompt(MentorSettings())
    messages = build_messages(prompt, [], "I feel sad today.", "sad", count_tokens=llm.count_tokens)
    pieces = list(llm.stream(messages, threading.Event()))
    assert len(pieces) > 1
    spoken = clean_for_speech("".join(pieces))
    assert len(spoken.split()) >= 4


def test_stop_event_stops_within_half_a_second(llm: TransformersChatModel) -> None:
    """Setting stop after the first piece ends the stream within 0.5 s."""
    stop = threading.Event()
    stopped_at = 0.0
    for _ in llm.stream(build_messages(load_mentor_prompt(MentorSettings()), [], "Tell me a story.", None), stop):
        if not stop.is_set():
            stop.set()
            stopped_at = time.perf_counter()
    assert stop.is_set()
    assert time.perf_counter() - stopped_at < 0.5


def test_count_tokens(llm: TransformersChatModel) -> None:
    """count_tokens uses the SmolLM2 tokenizer: more words, more tokens; no special tokens added."""
    assert llm.count_tokens("") == 0
    assert 0 < llm.count_tokens("I feel sad today.") < llm.count_tokens("I feel sad today, and tired, and alone.")


def test_warmed_history_is_reused_whole_by_the_next_prompt(llm: TransformersChatModel) -> None:
    """With SmolLM2's chat template, the warmed prefix (system prompt + history) is reused token for token by
    the next turn's prompt, so that turn prefills only its guidance and user message; the reply is unchanged."""
    prompt = load_mentor_prompt(MentorSettings())
    history = [HistoryTurn("user", "I failed my driving test."), HistoryTurn("assistant", "That hurts. What happened?")]
    messages = build_messages(prompt, history, "I was too nervous.", "sad", count_tokens=llm.count_tokens)
    prefix = next_prompt_prefix(prompt, history, count_tokens=llm.count_tokens)
    assert messages[: len(prefix)] == prefix
    llm.prefix_cache.max_entries = 0
    reference = "".join(llm.stream(messages, threading.Event()))
    llm.prefix_cache = PrefixCache(4)
    warmed = llm.warm_prefix(prefix)
    assert warmed > 40
    assert "".join(llm.stream(messages, threading.Event())) == reference
    assert llm.last_reused_tokens == warmed


def test_replies_decoded_together_are_the_replies_decoded_alone() -> None:
    """Six mentor prompts of different lengths on the real model, joining the batch one after another while the
    earlier replies are being decoded: greedy, each reply is token for token the one it gets alone."""
    settings = LLMSettings.model_validate({"max_new_tokens": 32, "prefix_cache_entries": 0})
    chat = load_llm(settings)
    prompt = load_mentor_prompt(MentorSettings())
    history = [HistoryTurn("user", "I failed my driving test."), HistoryTurn("assistant", "That hurts. What happened?")]
    said = [
        ("I feel sad today.", "sad", []),
        ("My boss shouted at me in front of everyone and I am still angry.", "angry", []),
        ("I was too nervous.", "sad", history),
        ("I can't sleep before my exam tomorrow.", "anxious", []),
        ("We got engaged last night!", "happy", []),
        ("Nothing much, just tired.", "neutral", history),
    ]
    prompts = [build_messages(prompt, h, text, emotion, count_tokens=chat.count_tokens) for text, emotion, h in said]
    alone = ["".join(chat.stream(m, threading.Event())) for m in prompts]
    got: list[str] = [""] * len(prompts)
    started = [threading.Event() for _ in prompts]

    def run(i: int) -> None:
        try:
            for piece in chat.stream(prompts[i], threading.Event()):
                got[i] += piece
                started[i].set()
        finally:
            started[i].set()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(prompts))]
    for thread, first_piece in zip(threads, started, strict=True):
        thread.start()
        assert first_piece.wait(60)  # the next reply joins while this one is being decoded
    for thread in threads:
        thread.join(120)
    assert got == alone
    assert all(len(reply.split()) >= 3 for reply in alone)
