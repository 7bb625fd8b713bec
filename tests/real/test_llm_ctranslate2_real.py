"""The CTranslate2 engine on the embedded SmolLM2 with the shipped adapter merged (converted once into the cache)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from backend.config import LLMSettings, MentorSettings
from backend.engines.llm.ctranslate2 import CTranslate2ChatModel, converted_dir
from backend.engines.llm.ctranslate2 import load as load_ct2
from backend.engines.llm.transformers import load as load_transformers
from backend.engines.protocols import ChatMessage, GenerationOptions
from backend.mentor.prompt_builder import build_messages, load_mentor_prompt
from backend.mentor.speakable import clean_for_speech
from backend.store.records import HistoryTurn

pytestmark = pytest.mark.real

USER = "My dog died yesterday and the house feels empty."


def _settings(**values: object) -> LLMSettings:
    return LLMSettings.model_validate({"backend": "ctranslate2", "max_new_tokens": 32, **values})


@pytest.fixture(scope="module")
def chat() -> CTranslate2ChatModel:
    model = load_ct2(_settings())
    model.warmup()
    return model


def _messages(chat: CTranslate2ChatModel) -> list[ChatMessage]:
    return build_messages(load_mentor_prompt(MentorSettings()), [], USER, "sad", count_tokens=chat.count_tokens)


def test_greedy_reply_matches_transformers_without_repetition_penalty(chat: CTranslate2ChatModel) -> None:
    """With the penalty at 1.0 (whose semantics differ between runtimes) CTranslate2 and transformers agree token
    for token on the merged model: the conversion kept the weights, RoPE base and chat template."""
    chat.settings = _settings(repetition_penalty=1.0)
    reference = load_transformers(LLMSettings(max_new_tokens=32, repetition_penalty=1.0))
    messages = _messages(chat)
    assert chat.generate(messages) == reference.generate(messages)
    chat.settings = _settings()


def test_both_engines_continue_an_opening_clause_alike(chat: CTranslate2ChatModel) -> None:
    """Given the reply's opening clause (pipeline.opening_clause), both engines yield only its continuation, the
    same greedy tokens at penalty 1.0, and the whole reads as one reply."""
    chat.settings = _settings(repetition_penalty=1.0)
    reference = load_transformers(LLMSettings(max_new_tokens=32, repetition_penalty=1.0))
    messages, options = _messages(chat), GenerationOptions(reply_prefix="I'm so sorry,")
    continuation = "".join(chat.stream(messages, threading.Event(), options))
    chat.settings = _settings()
    assert continuation == "".join(reference.stream(messages, threading.Event(), options))
    assert not continuation.lstrip().lower().startswith("i'm so sorry")
    assert len(clean_for_speech(continuation).split()) >= 4


def test_reply_is_speakable_and_reuses_the_system_prompt(chat: CTranslate2ChatModel) -> None:
    """After warm_prefix the system prompt's state is reused; the reply has words after speech cleaning."""
    messages = _messages(chat)
    chat.warm_prefix(messages[:1])
    reply = "".join(chat.stream(messages, threading.Event()))
    assert chat.last_reused_tokens > 50
    assert len(clean_for_speech(reply).split()) >= 4
    assert "<|im_end|>" not in reply


def test_stop_event_ends_the_stream(chat: CTranslate2ChatModel) -> None:
    """Setting stop after the first piece ends the stream with at most one more piece."""
    stop = threading.Event()
    pieces = []
    for piece in chat.stream(_messages(chat), stop):
        pieces.append(piece)
        stop.set()
    assert 1 <= len(pieces) <= 2


def test_history_start_is_reused_and_the_cache_stays_bounded(chat: CTranslate2ChatModel) -> None:
    """A warmed system prompt + history is reused by the next prompt; past static_prompt_entries the engine moves
    to a fresh generator (its cache starts empty) and still answers the same."""
    prompt = load_mentor_prompt(MentorSettings())
    history = [HistoryTurn("user", "I have an exam on Friday", "anxious"), HistoryTurn("assistant", "How do you feel?")]
    messages = build_messages(prompt, history, "Not ready at all", "anxious", count_tokens=chat.count_tokens)
    before = chat.generate(messages)
    chat.max_static, made = 2, chat.generators_made
    for k in range(3):
        chat.warm_prefix(messages[: len(history) + 1] if k == 2 else [ChatMessage("system", f"Prompt {k}")])
    assert chat.generators_made == made + 1
    after = "".join(chat.stream(messages, threading.Event()))
    assert chat.last_reused_tokens > 60  # system prompt + both history turns
    assert after == before


def test_converted_folder_follows_the_adapter(tmp_path: Path) -> None:
    """A different adapter (or none) or compute type converts into a different folder; the same settings reuse one."""
    assert converted_dir(_settings()) == converted_dir(_settings())
    assert converted_dir(_settings()) != converted_dir(_settings(adapter_path=None))
    assert converted_dir(_settings()) != converted_dir(_settings(compute_type="int8"))


def test_the_turn_end_reading_matches_transformers(chat: CTranslate2ChatModel) -> None:
    """vad.turn_end_threshold works with this engine too: its reading of the same words is transformers'."""
    reference = load_transformers(LLMSettings())
    for text in (USER, "When I get home from work", "I feel sad today."):
        assert chat.end_of_turn_probability(text) == pytest.approx(reference.end_of_turn_probability(text), abs=0.02)
    assert chat.end_of_turn_probability(" ... ") == 0.0
