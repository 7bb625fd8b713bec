"""BatchDecoder: replies decoded together get exactly the tokens they get alone (greedy), whenever they join."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from backend.config import LLMSettings
from backend.engines.llm.batch_decoder import BatchDecoder, Sampling, _Reply
from backend.engines.llm.transformers import TransformersChatModel
from backend.engines.protocols import ChatMessage
from tests.engines.test_llm_transformers import tiny_parts

pytestmark = pytest.mark.fast

PROMPTS = [
    [ChatMessage("user", "I feel sad today")],
    [ChatMessage("system", "calm breathe slowly calm breathe"), ChatMessage("user", "hello friend")],
    [ChatMessage("user", "talk")],
    [ChatMessage("system", " ".join(["you are not alone"] * 6)), ChatMessage("user", "I feel calm")],
]


@pytest.fixture(scope="module")
def parts() -> tuple[Any, Any]:
    return tiny_parts()


def _chat(parts: tuple[Any, Any], *, penalty: float = 1.0, scope: str = "reply") -> TransformersChatModel:
    settings = LLMSettings.model_validate(
        {
            "max_new_tokens": 10,
            "repetition_penalty": penalty,
            "repetition_penalty_scope": scope,
            "adapter_path": None,
            "prefix_cache_entries": 0,
        }
    )
    return TransformersChatModel(parts[0], parts[1], settings, name="tiny")


class _Recorder:
    """Counts tokens as a reply streams; ``ready`` once it has ``after`` pieces (the moment the next one joins)."""

    def __init__(self, after: int = 0) -> None:
        self.after = after
        self.ready = threading.Event()
        if after == 0:
            self.ready.set()
        self.text = ""

    def run(self, chat: TransformersChatModel, messages: list[ChatMessage]) -> None:
        try:
            for n, piece in enumerate(chat.stream(messages, threading.Event()), start=1):
                self.text += piece
                if n >= self.after:
                    self.ready.set()
        finally:
            self.ready.set()


@pytest.mark.parametrize(("penalty", "scope"), [(1.0, "reply"), (1.3, "reply"), (1.3, "prompt_and_reply")])
def test_replies_joining_mid_reply_get_the_tokens_they_get_alone(
    parts: tuple[Any, Any], penalty: float, scope: str
) -> None:
    """Four replies of different prompt lengths, each joining while the earlier ones are two pieces in (shorter
    and longer than the batch's cache): every reply's text is the one it gets alone, and they ran as a batch."""
    alone = _chat(parts, penalty=penalty, scope=scope)
    references = ["".join(alone.stream(m, threading.Event())) for m in PROMPTS]
    chat = _chat(parts, penalty=penalty, scope=scope)
    recorders = [_Recorder(after=2) for _ in PROMPTS]
    threads = []
    for recorder, messages in zip(recorders, PROMPTS, strict=True):
        thread = threading.Thread(target=recorder.run, args=(chat, messages), daemon=True)
        thread.start()
        threads.append(thread)
        assert recorder.ready.wait(30)
    for thread in threads:
        thread.join(30)
    assert [r.text for r in recorders] == references
    assert chat.decoder.wait_idle(30)


def test_the_batch_holds_several_replies_at_once(parts: tuple[Any, Any]) -> None:
    """Replies submitted together are decoded in one batch: the decoder saw more than one row in a step."""
    chat = _chat(parts)
    seen: list[int] = []
    step = chat.decoder._step

    def counting_step() -> None:
        seen.append(chat.decoder.decoding)
        step()

    chat.decoder._step = counting_step  # type: ignore[method-assign]
    threads = [
        threading.Thread(target=lambda m=m: list(chat.stream(m, threading.Event())), daemon=True) for m in PROMPTS
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert max(seen) > 1


def test_the_reply_penalty_counts_generated_tokens_only() -> None:
    """The "reply" penalty leaves the prompt's tokens alone and divides (or, when negative, multiplies) the
    scores of tokens already generated, each once; the "prompt_and_reply" one counts the prompt too."""
    import torch

    decoder = BatchDecoder(None, max_batch=1, model_lock=threading.Lock(), on_finished=lambda ids, cache: None)
    scores = torch.tensor([2.0, 2.0, -2.0, 2.1])

    def reply(counts_prompt: bool, generated: list[int]) -> _Reply:
        sampling = Sampling(10, frozenset(), repetition_penalty=2.0, penalty_counts_prompt=counts_prompt)
        r = _Reply([0, 3], None, 0, sampling, threading.Event(), None)
        r.generated = generated
        return r

    assert decoder._choose(reply(False, []), scores) == 3  # nothing generated: the top score
    assert decoder._choose(reply(True, []), scores) in (0, 1)  # the prompt's token 3 is penalised
    assert decoder._choose(reply(False, [3, 3]), scores) in (0, 1)  # 2.1 / 2 once, not twice: below 2.0
    assert decoder._choose(reply(False, [0, 1, 3]), torch.tensor([2.0, 2.0, -2.0, 2.1])) == 3  # 1.05 > 1.0


def test_a_shared_prompt_start_is_copied_to_every_reply_that_starts_with_it() -> None:
    """With ``copy``, a cached start stays while replies use it: two replies taken at once both get it; an entry a
    newer one extends is dropped (the newer one holds it too)."""
    from backend.engines.llm.prefix_cache import PrefixCache

    cache = PrefixCache(4, min_tokens=2, copy=lambda entry, n: entry[:n])
    system = list(range(10))
    cache.put(system, list(range(10)))
    first, reused_first = cache.take([*system, 50, 51])
    second, reused_second = cache.take([*system, 60])
    assert (reused_first, reused_second) == (10, 10) and first == second == system
    cache.put([*system, 50, 51, 52], list(range(13)))  # the first reply's conversation so far
    assert len(cache) == 1
    assert cache.take([*system, 70]) == (system, 10)  # a new session still starts from the system prompt


def test_close_ends_the_decoding_thread_and_fails_a_reply_in_flight(parts: tuple[Any, Any]) -> None:
    """At interpreter exit the decoder closes: its thread ends, a reply still streaming gets ModelError."""
    from backend.core.exceptions import ModelError

    settings = LLMSettings.model_validate({"max_new_tokens": 100_000, "repetition_penalty": 1.0, "adapter_path": None})
    chat = TransformersChatModel(parts[0], parts[1], settings, name="tiny")
    stream = chat.stream(PROMPTS[0], threading.Event())
    assert next(stream)
    thread = chat.decoder._thread
    assert thread is not None and thread.is_alive()
    chat.decoder.close()
    assert not thread.is_alive()
    with pytest.raises(ModelError):
        for _ in stream:
            pass
