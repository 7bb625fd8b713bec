"""TransformersChatModel.stream() on a tiny random Llama and a word-level tokenizer built in code."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from backend.config import LLMSettings
from backend.core.exceptions import ModelError
from backend.engines.llm.transformers import TransformersChatModel
from backend.engines.protocols import ChatMessage, GenerationOptions, PenaltyScope

pytestmark = pytest.mark.fast

WORDS: tuple[str, ...] = (
    "hello",
    "world",
    "I",
    "feel",
    "sad",
    "today",
    "calm",
    "breathe",
    "slowly",
    "you",
    "are",
    "not",
)
WORDS += ("alone", "friend", "talk", "system", "user", "assistant")
MESSAGES = [ChatMessage("system", "calm"), ChatMessage("user", "I feel sad today")]


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = ["<unk>", "<s>", "</s>", *(f"▁{w}" for w in WORDS)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant {% endif %}"
    )
    return tok


@pytest.fixture(scope="module")
def parts() -> tuple[Any, Any]:
    return tiny_parts()


def tiny_parts() -> tuple[Any, Any]:
    """A 2-layer random Llama that never ends a reply on its own, and its word-level tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # never pick </s> or <unk>, so only stop/close/max_new_tokens end a reply
        model.lm_head.weight[tok.eos_token_id].zero_()
        model.lm_head.weight[tok.unk_token_id].zero_()
        model.lm_head.weight[tok.eos_token_id, 0] = -1e4
        model.lm_head.weight[tok.unk_token_id, 0] = -1e4
    return model, tok


def _chat(parts: tuple[Any, Any], max_new_tokens: int) -> TransformersChatModel:
    settings = LLMSettings(max_new_tokens=max_new_tokens, repetition_penalty=1.0, adapter_path=None)
    return TransformersChatModel(parts[0], parts[1], settings, name="tiny")


def _idle(chat: TransformersChatModel) -> bool:
    """Every reply the engine was given has left its decoder (waits on the decoder's event; 30 s guard)."""
    return chat.decoder.wait_idle(30)


def test_stream_yields_text_pieces(parts: tuple[Any, Any]) -> None:
    """A reply arrives as several non-empty pieces of vocabulary words, and has left the decoder afterwards."""
    chat = _chat(parts, 12)
    pieces = list(chat.stream(MESSAGES, threading.Event()))
    assert len(pieces) >= 2
    assert all(p for p in pieces)
    words = "".join(pieces).split()
    assert words and set(words) <= set(WORDS)
    assert _idle(chat)


def _finishes(action: Callable[[], object], hang_s: float = 30.0) -> bool:
    """Run ``action`` in a thread; True when it returned (a guard against hanging, not a speed check:
    tests/test_wall_clock.py holds the timed versions)."""
    worker = threading.Thread(target=action, daemon=True)
    worker.start()
    worker.join(hang_s)
    return not worker.is_alive()


def test_stop_event_ends_generation_quickly(parts: tuple[Any, Any]) -> None:
    """Setting stop after the first piece ends the stream within a few pieces of 100 000 allowed, and the reply
    leaves the decoder."""
    stop = threading.Event()
    chat = _chat(parts, 100_000)
    got: list[str] = []

    def consume() -> None:
        for piece in chat.stream(MESSAGES, stop):
            got.append(piece)
            stop.set()

    assert _finishes(consume), "the stream did not end after stop was set"
    assert 1 <= len(got) < 5
    assert _idle(chat)


def test_closing_the_generator_takes_the_reply_out_of_the_batch(parts: tuple[Any, Any]) -> None:
    """A consumer that stops iterating early (close()) ends a reply of 100 000 allowed tokens: it leaves the
    decoder, which goes on serving the next reply."""
    stop = threading.Event()
    chat = _chat(parts, 100_000)
    gen = chat.stream(MESSAGES, stop)
    assert next(gen)
    assert chat.decoder.active == 1
    assert _finishes(gen.close), "close() did not return"
    assert _idle(chat)
    assert not stop.is_set()  # the caller's event is left alone
    assert _finishes(lambda: list(_chat(parts, 3).stream(MESSAGES, threading.Event())))


class _BrokenModel:
    """A model whose forward pass fails."""

    device = "cpu"

    def __call__(self, **kwargs: Any) -> None:
        raise RuntimeError("out of memory (simulated)")


def test_generation_errors_surface_as_model_error(parts: tuple[Any, Any]) -> None:
    """An exception inside the decoding thread reaches the consumer as ModelError instead of hanging."""
    chat = TransformersChatModel(_BrokenModel(), parts[1], LLMSettings(adapter_path=None), name="broken")
    with pytest.raises(ModelError) as info:
        list(chat.stream(MESSAGES, threading.Event()))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert _idle(chat)


def test_count_tokens_and_prompt_text(parts: tuple[Any, Any]) -> None:
    """count_tokens counts words of the tiny vocabulary; the prompt ends with the generation prompt."""
    chat = _chat(parts, 4)
    assert chat.count_tokens("I feel sad today") == 4
    assert chat.prompt_text(MESSAGES).rstrip().endswith("assistant")


LONG_SYSTEM = ChatMessage("system", " ".join(["calm", "breathe", "slowly"] * 10))


def test_prefix_cache_reuses_the_shared_prompt_and_keeps_replies_identical(parts: tuple[Any, Any]) -> None:
    """A second prompt that extends the first (the conversation so far plus a new user turn) reuses the cached
    prefix, and greedy replies are exactly those computed without any cache."""
    first = [LONG_SYSTEM, ChatMessage("user", "I feel sad today")]
    cold = _chat(parts, 8)
    cold.prefix_cache.max_entries = 0  # no caching at all: the reference
    reply_ref = "".join(cold.stream(first, threading.Event()))
    follow = [*first, ChatMessage("assistant", reply_ref.strip()), ChatMessage("user", "talk to you friend")]
    follow_ref = "".join(cold.stream(follow, threading.Event()))
    assert cold.last_reused_tokens == 0

    warm = _chat(parts, 8)
    assert "".join(warm.stream(first, threading.Event())) == reply_ref
    assert warm.last_reused_tokens == 0 and len(warm.prefix_cache) == 1
    assert "".join(warm.stream(follow, threading.Event())) == follow_ref
    assert warm.last_reused_tokens >= 30  # at least the long system prompt came from the cache


def test_warm_prefix_serves_the_next_prompt_and_keeps_replies_identical(parts: tuple[Any, Any]) -> None:
    """Warming the conversation so far means the next prompt only prefills what follows it (guidance and user
    turn), and its greedy reply is exactly the one computed without any cache."""
    prefix = [LONG_SYSTEM, ChatMessage("user", "I feel sad today"), ChatMessage("assistant", "you are not alone")]
    prompt = [*prefix, ChatMessage("system", "calm"), ChatMessage("user", "talk to you friend")]
    cold = _chat(parts, 8)
    cold.prefix_cache.max_entries = 0
    assert cold.warm_prefix(prefix) == 0  # no cache, nothing to do
    reference = "".join(cold.stream(prompt, threading.Event()))

    warm = _chat(parts, 8)
    prefix_tokens = len(warm.tokenizer(warm.prompt_text(prefix), add_special_tokens=False)["input_ids"]) - 1
    assert warm.warm_prefix(prefix) == prefix_tokens  # everything but the generation prompt ("assistant")
    assert warm.warm_prefix(prefix) == 1  # already cached: only the one token take() always leaves
    assert "".join(warm.stream(prompt, threading.Event())) == reference
    # This word-level template ends the prefix alone with a lone space token; the real one ends at a special.
    assert warm.last_reused_tokens >= prefix_tokens - 1


@pytest.mark.parametrize("scope", ["reply", "prompt_and_reply"])
def test_penalty_scope_from_settings_or_per_reply_options(parts: tuple[Any, Any], scope: PenaltyScope) -> None:
    """llm.repetition_penalty_scope picks where the penalty goes, a reply's GenerationOptions override it, and
    with "reply" the prompt's tokens are not counted."""
    other = "prompt_and_reply" if scope == "reply" else "reply"
    base = {"max_new_tokens": 4, "repetition_penalty": 1.3, "adapter_path": None}
    for settings_scope, options in ((scope, GenerationOptions()), (other, GenerationOptions(scope))):
        settings = LLMSettings.model_validate({**base, "repetition_penalty_scope": settings_scope})
        chat = TransformersChatModel(parts[0], parts[1], settings, name="tiny")
        sampling = chat._sampling(options)
        assert sampling.repetition_penalty == 1.3
        assert sampling.penalty_counts_prompt == (scope == "prompt_and_reply")
        assert list(chat.stream(MESSAGES, threading.Event(), options))  # and a reply streams with it


class _Gate:
    """A GenerationGate the test drives: pause from the start, resume on demand; ``reached`` once paused."""

    def __init__(self) -> None:
        self.resume = threading.Event()
        self.reached = threading.Event()

    def must_pause(self) -> bool:
        if self.resume.is_set():
            return False
        self.reached.set()
        return True

    def wait(self) -> None:
        self.resume.wait(30)


def _one_place(parts: tuple[Any, Any], max_new_tokens: int) -> TransformersChatModel:
    """An engine whose batch has one place (llm.batch_size 1)."""
    settings = LLMSettings.model_validate(
        {"max_new_tokens": max_new_tokens, "repetition_penalty": 1.0, "adapter_path": None, "batch_size": 1}
    )
    return TransformersChatModel(parts[0], parts[1], settings, name="tiny")


def test_a_paused_reply_gives_its_place_away_and_resumes_unchanged(parts: tuple[Any, Any]) -> None:
    """One place in the batch. A pauses at its gate after its first token; B then runs to the end, which it could
    not if A kept its place; A resumes and its greedy reply is the same as without a pause."""
    other = [ChatMessage("system", "calm"), ChatMessage("user", "hello friend")]
    chat = _one_place(parts, 12)
    reference_a = "".join(chat.stream(MESSAGES, threading.Event()))
    reference_b = "".join(chat.stream(other, threading.Event()))
    chat = _one_place(parts, 12)
    gate = _Gate()
    got: dict[str, str] = {}

    def run_a() -> None:
        got["a"] = "".join(chat.stream(MESSAGES, threading.Event(), GenerationOptions(gate=gate)))

    a = threading.Thread(target=run_a, daemon=True)
    a.start()
    assert gate.reached.wait(30), "A never reached its gate"

    def run_b() -> None:
        got["b"] = "".join(chat.stream(other, threading.Event()))

    assert _finishes(run_b), "B could not run while A was paused"
    assert "a" not in got  # A is still paused
    gate.resume.set()
    a.join(30)
    assert got == {"a": reference_a, "b": reference_b}


def test_a_reply_stopped_while_paused_ends_at_once(parts: tuple[Any, Any]) -> None:
    """Barge-in on a paused reply: it ends without running again, and the engine serves the next reply."""
    chat = _one_place(parts, 100_000)
    gate, stop = _Gate(), threading.Event()
    a = threading.Thread(target=lambda: list(chat.stream(MESSAGES, stop, GenerationOptions(gate=gate))), daemon=True)
    a.start()
    assert gate.reached.wait(30)
    stop.set()
    a.join(30)
    assert not a.is_alive(), "the stopped reply did not end"
    assert _idle(chat)
    assert _finishes(lambda: list(_one_place(parts, 3).stream(MESSAGES, threading.Event())))


def test_a_reply_prefix_is_continued_and_not_repeated(parts: tuple[Any, Any]) -> None:
    """With ``reply_prefix`` the engine yields only what follows it: exactly the greedy continuation of the prompt
    with the prefix appended (an opening clause the pipeline already spoke)."""
    import torch

    model, tok = parts
    chat = _chat(parts, 6)
    assert chat.continues_prefix
    prefix = "you are"
    got = "".join(chat.stream(MESSAGES, threading.Event(), GenerationOptions(reply_prefix=prefix)))
    ids = tok(chat.prompt_text(MESSAGES) + prefix, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.eos_token_id)
    expected = tok.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)
    assert got.split() == expected.split() != []


def test_end_of_turn_probability_reuses_the_template_start_exactly(parts: tuple[Any, Any]) -> None:
    """The turn-end reading is a probability, is the same call after call (the cached template start is cropped
    back each time) and equals a forward pass of the whole text without any cache."""
    import torch

    model, tok = parts
    chat = _chat(parts, 4)
    first = chat.end_of_turn_probability("I feel sad today.")
    assert 0.0 <= first <= 1.0
    assert chat.end_of_turn_probability("you are not alone") != first
    assert chat.end_of_turn_probability("I feel sad today") == pytest.approx(first, abs=1e-6)
    start = chat.prompt_text([ChatMessage("user", "\u2063")], generation_prompt=False).split("\u2063")[0]
    ids = tok(start + "I feel sad today", return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        probabilities = torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
    assert first == pytest.approx(float(probabilities[chat._turn_end_ids()].sum()), abs=1e-5)
    assert chat.end_of_turn_probability(" ... ") == 0.0
