"""The mentor's chat LLM: transformers causal LM (+ optional LoRA adapter), streamed token by token.

``stream()`` and ``warmup()`` block (generation runs on the CPU or GPU); iterate ``stream()`` inside a
worker thread. Generation runs in its own background thread so a ``stop`` event ends it after one token.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Generator, Sequence
from typing import Any, Literal

from backend.config import LLMSettings
from backend.core.exceptions import ModelError, ModelLoadError
from backend.engines.llm.model_files import (
    TransformersOptions,
    ensure_converted,
    load_base,
    load_merged,
    transformers_options,
)
from backend.engines.llm.prefix_cache import PrefixCache
from backend.engines.llm.turn_end import turn_end_ids, user_message_start, words_to_read
from backend.engines.protocols import ChatMessage, GenerationGate, GenerationOptions

__all__ = ["Options", "TransformersChatModel", "ensure_converted", "load", "load_base"]

Options = TransformersOptions  # the registry validates ``llm.*`` engine keys against it

logger = logging.getLogger(__name__)

_POLL_S = 0.05  # how often the consumer re-checks the stop event while waiting for the next piece


class _StopOnEvents:
    """A transformers StoppingCriteria, called after every token: ends generation once any of the events is set,
    and pauses it while its gate says so, giving the engine's slot to another generation meanwhile (a generation
    stopped while paused ends without taking the slot back; ``holds_slot`` says whether it has it)."""

    def __init__(
        self, *events: threading.Event, gate: GenerationGate | None = None, slots: threading.Semaphore | None = None
    ) -> None:
        self._events = events
        self._gate = gate
        self._slots = slots
        self.holds_slot = True

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self._gate is not None and self._gate.must_pause():
            if self._slots is not None:
                self._slots.release()
                self.holds_slot = False
            self._gate.wait()
            if self._slots is not None and not self._stopped():
                self._slots.acquire()
                self.holds_slot = True
        flag = self._stopped()
        return torch.full((input_ids.shape[0],), flag, dtype=torch.bool, device=input_ids.device)

    def _stopped(self) -> bool:
        return any(e.is_set() for e in self._events)


class _ReplyRepetitionPenalty:
    """A transformers LogitsProcessor: the repetition penalty over the tokens generated after the prompt only.

    transformers' own penalty also counts the prompt, so a reply is pushed away from the person's words, which a
    reply that names what they said needs."""

    def __init__(self, penalty: float, prompt_length: int) -> None:
        self.penalty = penalty
        self.prompt_length = prompt_length

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] == 0:
            return scores
        seen = torch.gather(scores, 1, generated)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return scores.scatter(1, generated, seen)


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
        self._slots = threading.Semaphore(max(1, settings.max_concurrent))
        self.prefix_cache = PrefixCache(transformers_options(settings).prefix_cache_entries)
        self.last_reused_tokens = 0  # prompt tokens served from the prefix cache in the latest generation
        self._end_ids: list[int] | None = None
        self._turn_end_lock = threading.Lock()
        self._turn_start: tuple[str, list[int], Any] | None = None  # end_of_turn_probability's template start

    # --- public API ---------------------------------------------------------------------------------

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

        Errors of the generation thread are raised here as ModelError. Closing the generator early stops
        generation and joins its thread.
        """
        from transformers import TextIteratorStreamer

        prefix = options.reply_prefix if options else ""
        try:
            text = self.prompt_text(messages) + prefix
            inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        except Exception as exc:
            raise ModelError(f"language model '{self.name}' could not encode the prompt") from exc
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        cache, self.last_reused_tokens = self.prefix_cache.take(inputs["input_ids"][0].tolist())
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=_POLL_S)
        closed = threading.Event()
        errors: list[BaseException] = []
        thread = threading.Thread(
            target=self._generate,
            args=(
                inputs,
                cache,
                streamer,
                self._stopper(stop, closed, options),
                errors,
                options or GenerationOptions(),
            ),
            name="llm-generate",
            daemon=True,
        )
        thread.start()
        try:
            while not stop.is_set():
                try:
                    piece = next(streamer)
                except StopIteration:
                    break
                except queue.Empty:
                    if not thread.is_alive() and streamer.text_queue.empty():
                        break
                    continue
                if piece:
                    yield piece
        finally:
            closed.set()
            thread.join()
        if errors:
            raise ModelError(f"language model '{self.name}' failed while generating") from errors[0]

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
        with self._slots, torch.inference_mode():
            cache, reused = self.prefix_cache.take(ids)
            cache = cache if cache is not None else DynamicCache()
            todo = torch.tensor([ids[reused:]], device=self.model.device)
            try:
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

    def _stopper(
        self, stop: threading.Event, closed: threading.Event, options: GenerationOptions | None
    ) -> _StopOnEvents:
        return _StopOnEvents(stop, closed, gate=options.gate if options else None, slots=self._slots)

    def _generation_kwargs(self, prompt_length: int, options: GenerationOptions) -> dict[str, Any]:
        from transformers import GenerationConfig, LogitsProcessorList

        s = self.settings
        penalty, processors = s.repetition_penalty, LogitsProcessorList()
        scope = options.repetition_penalty_scope or transformers_options(s).repetition_penalty_scope
        if penalty != 1.0 and scope == "reply":
            penalty = 1.0
            processors.append(_ReplyRepetitionPenalty(s.repetition_penalty, prompt_length))
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        sampling: dict[str, Any] = {"do_sample": False}
        if s.temperature > 0:
            sampling = {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p}
        config = GenerationConfig(
            max_new_tokens=s.max_new_tokens,
            repetition_penalty=penalty,
            eos_token_id=eos,
            pad_token_id=pad,
            **sampling,
        )
        return {"generation_config": config, "logits_processor": processors}

    def _generate(
        self,
        inputs: dict[str, Any],
        cache: Any,
        streamer: Any,
        stopper: _StopOnEvents,
        errors: list[BaseException],
        options: GenerationOptions,
    ) -> None:
        import torch
        from transformers import DynamicCache, StoppingCriteriaList

        self._slots.acquire()
        try:
            with torch.inference_mode():
                cache = cache if cache is not None else DynamicCache()
                sequences = self.model.generate(
                    **inputs,
                    past_key_values=cache,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([stopper]),
                    **self._generation_kwargs(int(inputs["input_ids"].shape[1]), options),
                )
                # The cache now holds the prompt and the reply but the last token: keep it for the next prompt.
                self.prefix_cache.put(sequences[0, : cache.get_seq_length()].tolist(), cache)
        except BaseException as exc:  # surfaced to the consumer as ModelError
            errors.append(exc)
            logger.exception("language model generation failed")
        finally:
            if stopper.holds_slot:
                self._slots.release()
            streamer.end()


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
