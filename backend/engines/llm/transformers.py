"""The mentor's chat LLM: transformers causal LM (+ optional LoRA adapter), streamed token by token.

``stream()`` and ``warmup()`` block; iterate ``stream()`` inside a worker thread. Replies are decoded by one
thread, all active replies together, one token each per forward pass (batch_decoder.py, ``llm.batch_size``); a
``stop`` event ends a reply at the next token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Sequence
from typing import Any, Literal

from backend.config import LLMSettings
from backend.core.exceptions import ModelError, ModelLoadError
from backend.engines.llm.batch_decoder import BatchDecoder, Sampling
from backend.engines.llm.model_files import (
    TransformersOptions,
    ensure_converted,
    load_base,
    load_merged,
    transformers_options,
)
from backend.engines.llm.prefix_cache import PrefixCache
from backend.engines.llm.turn_end import turn_end_ids, user_message_start, words_to_read
from backend.engines.protocols import ChatMessage, GenerationOptions

__all__ = ["Options", "TransformersChatModel", "ensure_converted", "load", "load_base"]

Options = TransformersOptions  # the registry validates ``llm.*`` engine keys against it

logger = logging.getLogger(__name__)


class TransformersChatModel:
    """ChatModel over a loaded transformers causal LM and its tokenizer (with a chat template)."""

    pausable: Literal[True] = True  # Pausable: honours GenerationOptions.gate between tokens
    continues_prefix: Literal[True] = True  # ContinuesPrefix: honours GenerationOptions.reply_prefix

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        settings: LLMSettings,
        *,
        device: str = "cpu",
        adapter_loaded: bool = False,
        name: str = "",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device
        self.adapter_loaded = adapter_loaded
        self.name = name or settings.model
        options = transformers_options(settings)
        self.prefix_cache = PrefixCache(options.prefix_cache_entries, copy=_copy_start)
        self._model_lock = threading.Lock()  # one forward pass at a time: decoding steps, prefilling a prompt cache
        self.decoder = BatchDecoder(
            model, max_batch=options.batch_size, model_lock=self._model_lock, on_finished=self.prefix_cache.put
        )
        self.last_reused_tokens = 0  # prompt tokens served from the prefix cache in the latest generation
        self._end_ids: list[int] | None = None
        self._turn_end_lock = threading.Lock()
        self._turn_start: tuple[str, list[int], Any] | None = None  # end_of_turn_probability's template start

    # --- public API ---------------------------------------------------------------------------------

    @property
    def decoding(self) -> int:
        """Replies in the decoding batch now (BatchedDecoding)."""
        return self.decoder.decoding

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` (no special tokens). Cheap, but blocking."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_text(self, messages: Sequence[ChatMessage], *, generation_prompt: bool = True) -> str:
        """The exact prompt string given to the model (chat template, with the generation prompt by default)."""
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return str(self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt))

    def stream(
        self, messages: Sequence[ChatMessage], stop: threading.Event, options: GenerationOptions | None = None
    ) -> Generator[str, None, None]:
        """Yield text pieces of the reply (after ``options.reply_prefix``, when given). Blocking; ends soon
        after ``stop`` is set or the generator closes.

        Errors of the decoding thread are raised here as ModelError. Closing the generator early takes the reply
        out of the batch at the next step.
        """
        prefix = options.reply_prefix if options else ""
        try:
            ids: list[int] = self.tokenizer(self.prompt_text(messages) + prefix, add_special_tokens=False)["input_ids"]
        except Exception as exc:
            raise ModelError(f"language model '{self.name}' could not encode the prompt") from exc
        cache, self.last_reused_tokens = self.prefix_cache.take(ids)
        options = options or GenerationOptions()
        tokens = self.decoder.submit(ids, cache, self.last_reused_tokens, self._sampling(options), stop, options.gate)
        eos = self.tokenizer.eos_token_id
        reply: list[int] = []
        sent = ""
        try:
            for token in tokens:
                if token == eos:
                    break
                reply.append(token)
                text = self.tokenizer.decode(reply, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                    continue
                if len(text) > len(sent):
                    piece, sent = text[len(sent) :], text
                    yield piece
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"language model '{self.name}' failed while generating") from exc
        finally:
            tokens.close()

    def warm_prefix(self, messages: Sequence[ChatMessage]) -> int:
        """Prefill ``messages`` (rendered without a generation prompt) into the prefix cache. Blocking.

        Called between turns with the system prompt and the history the next prompt will start with, so the
        next turn's prefill is only its guidance and user message, even after the history window has moved.
        """
        if self.prefix_cache.max_entries <= 0 or not messages:
            return 0
        import torch
        from transformers import DynamicCache

        try:
            text = self.prompt_text(messages, generation_prompt=False)
            ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        except Exception as exc:
            raise ModelError(f"language model '{self.name}' could not encode the prompt") from exc
        with torch.inference_mode():
            cache, reused = self.prefix_cache.take(ids)
            cache = cache if cache is not None else DynamicCache()
            todo = torch.tensor([ids[reused:]], device=self.model.device)
            try:
                with self._model_lock:
                    self.model(input_ids=todo, past_key_values=cache, use_cache=True, logits_to_keep=1)
            except Exception as exc:
                raise ModelError(f"language model '{self.name}' failed while prefilling") from exc
            self.prefix_cache.put(ids, cache)
        return len(ids) - reused

    def end_of_turn_probability(self, text: str) -> float:
        """How likely the person has finished their turn after saying ``text``: the model's probability that
        their message (or its sentence) ends right here, read before its final punctuation. One forward pass of
        the message's few tokens, on no slot. Blocking."""
        import torch
        from transformers import DynamicCache

        words = words_to_read(text)
        if not words:
            return 0.0
        try:
            with self._turn_end_lock, torch.inference_mode():
                start, start_ids, cache = self._turn_start_state()
                ids: list[int] = self.tokenizer(start + words, add_special_tokens=False)["input_ids"]
                if ids[: len(start_ids)] != start_ids or len(ids) <= len(start_ids):
                    cache, cached = DynamicCache(), 0  # the words merged into the start's last token
                else:
                    cached = len(start_ids)
                todo = torch.tensor([ids[cached:]], device=self.model.device)
                out = self.model(input_ids=todo, past_key_values=cache, use_cache=True, logits_to_keep=1)
                cache.crop(-(len(ids) - cached))  # back to the template's start, for the next call
            probabilities = torch.softmax(out.logits[0, -1].float(), dim=-1)
            return float(probabilities[self._turn_end_ids()].sum())
        except Exception as exc:
            self._turn_start = None  # its state may be half-cropped: computed again next time
            raise ModelError(f"language model '{self.name}' could not judge the end of the turn") from exc

    def _turn_start_state(self) -> tuple[str, list[int], Any]:
        """The chat template's text before the user's words (the same every call), its tokens but the last (which
        may merge with the first word) and their KV state, computed once. Under the lock."""
        import torch
        from transformers import DynamicCache

        if self._turn_start is None:
            start = user_message_start(lambda messages: self.prompt_text(messages, generation_prompt=False))
            start_ids: list[int] = self.tokenizer(start, add_special_tokens=False)["input_ids"][:-1]
            cache = DynamicCache()
            if start_ids:
                todo = torch.tensor([start_ids], device=self.model.device)
                self.model(input_ids=todo, past_key_values=cache, use_cache=True)
            self._turn_start = (start, start_ids, cache)
        return self._turn_start

    def _turn_end_ids(self) -> list[int]:
        if self._end_ids is None:
            self._end_ids = turn_end_ids(self.tokenizer)
        return self._end_ids

    def generate(self, messages: Sequence[ChatMessage]) -> str:
        """The whole reply at once. Blocking."""
        return "".join(self.stream(messages, threading.Event()))

    def warmup(self) -> None:
        """One short generation so the first real turn is not slow. Blocking."""
        stop = threading.Event()
        for n, _ in enumerate(self.stream([ChatMessage("user", "Hello.")], stop)):
            if n >= 3:
                break

    # --- internals ----------------------------------------------------------------------------------

    def _sampling(self, options: GenerationOptions) -> Sampling:
        s = self.settings
        scope = options.repetition_penalty_scope or transformers_options(s).repetition_penalty_scope
        return Sampling(
            max_new_tokens=s.max_new_tokens,
            end_ids=frozenset([self.tokenizer.eos_token_id]),
            repetition_penalty=s.repetition_penalty,
            penalty_counts_prompt=scope != "reply",
            temperature=s.temperature,
            top_p=s.top_p,
        )


def _copy_start(cache: Any, positions: int) -> Any:
    """A new DynamicCache holding the first ``positions`` of ``cache`` (which is left as it is)."""
    from transformers import DynamicCache

    return DynamicCache(
        ddp_cache_data=[
            (layer.keys[:, :, :positions].clone(), layer.values[:, :, :positions].clone()) for layer in cache.layers
        ]
    )


def load(settings: LLMSettings) -> TransformersChatModel:
    """Load the base model (converting the embedded one once) plus the LoRA adapter when present. Blocking."""
    try:
        started = time.perf_counter()
        model, tokenizer, adapter = load_merged(settings)
        device = str(model.device.type)
        chat = TransformersChatModel(model, tokenizer, settings, device=device, adapter_loaded=adapter is not None)
        logger.info(
            "language model loaded",
            extra={
                "model": settings.model,
                "device": device,
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        return chat
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"language model '{settings.model}' failed to load: {exc}") from exc
