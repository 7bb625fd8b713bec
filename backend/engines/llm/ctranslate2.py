"""The chat LLM on CTranslate2 (``llm.backend: ctranslate2``): about twice transformers' speed per token on a CPU.

The base model with the LoRA adapter merged is converted once into the cache (``llm.ct2_dir``, named by a hash
of the adapter and the compute type, so a retrained adapter converts again). A prompt's start (the system prompt,
and between turns the system prompt plus the history) is CTranslate2's ``static_prompt``: ``warm_prefix`` computes
its model state once and every later prompt that starts with it reuses it, so a turn prefills only its guidance
and message. CTranslate2 keeps every static prompt it has cached for the life of the generator, so the engine
counts them and, past ``llm.static_prompt_entries``, replaces the generator (between turns, while the user talks):
it waits until no generation runs, releases the old generator with its cache, then loads a new one. (Loading the
new one before the old is gone keeps the old one's memory: about +0.5 GB a replacement, measured.)

Replies are close to but not the same as transformers' (0 of 10 identical at the shipped repetition penalty):
CTranslate2's penalty counts only generated tokens, transformers' also the prompt's (/work/shared/LLM_RUNTIMES.md).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from backend.config import LLMSettings, resolve_path
from backend.core.exceptions import ModelError, ModelLoadError
from backend.engines.llm.model_files import (
    adapter_dir,
    convert_once,
    ensure_converted,
    load_merged,
    resolve_llm_device,
)
from backend.engines.llm.turn_end import turn_end_ids, user_message_start, words_to_read
from backend.engines.protocols import ChatMessage, GenerationOptions
from backend.engines.registry import engine_options

logger = logging.getLogger(__name__)

_MODEL_FILE = "model.bin"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


class Options(BaseModel):
    """CTranslate2's own settings: the ``llm.*`` keys besides those every LLM engine has."""

    model_config = ConfigDict(extra="forbid")
    ct2_dir: Path = Path("models/cache/smollm2-135m-ct2")  # converted models live in sub-folders here
    compute_type: str = "float32"  # int8 is slower than float32 on AVX2-only CPUs (LLM_RUNTIMES.md)
    threads: int = Field(2, ge=1)  # threads per generation
    replicas: int = Field(1, ge=1)  # generations running at once (each with ``threads`` threads)
    static_prompt_entries: int = Field(8, ge=1)  # prompt starts kept (about 46 KB a token each)
    # transformers' folder of the base model (the GGUF conversion), used only while converting:
    cache_dir: Path = Path("models/cache/smollm2-135m-instruct")


def ct2_options(settings: LLMSettings) -> Options:
    return engine_options("llm", "ctranslate2", settings, Options)


def converted_dir(settings: LLMSettings) -> Path:
    """Where the converted model of these settings lives: a hash of the base, the adapter and the compute type."""
    options = ct2_options(settings)
    digest = hashlib.sha256(f"{settings.model}|{options.compute_type}".encode())
    adapter = adapter_dir(settings)
    for path in sorted(adapter.glob("adapter_*")) if adapter is not None else []:
        digest.update(path.name.encode() + path.read_bytes())
    return resolve_path(options.ct2_dir) / f"{digest.hexdigest()[:12]}-{options.compute_type}"


def ensure_ct2(settings: LLMSettings) -> Path:
    """Merge the adapter into the base model and convert it to CTranslate2 once. Blocking (~40 s on 2 cores)."""
    options = ct2_options(settings)
    common = settings.model_dump(exclude=set(settings.model_extra or {}))
    base_settings = LLMSettings.model_validate(
        {**common, "backend": "transformers", "cache_dir": options.cache_dir, "threads": options.threads}
    )

    def build(target: Path) -> None:
        from ctranslate2.converters import TransformersConverter

        source = ensure_converted(base_settings)
        model, tokenizer, _ = load_merged(base_settings)
        merged = target / "merged"
        model.save_pretrained(str(merged))
        tokenizer.save_pretrained(str(merged))
        TransformersConverter(str(merged)).convert(str(target / "ct2"), quantization=options.compute_type)
        for name in _TOKENIZER_FILES:
            for folder in (merged, Path(source)):
                if (folder / name).is_file():
                    (target / "ct2" / name).write_bytes((folder / name).read_bytes())
                    break
        for path in (target / "ct2").iterdir():
            path.rename(target / path.name)
        for folder in (merged, target / "ct2"):
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()

    return convert_once(
        converted_dir(settings), build, settings.model, done=lambda path: (path / _MODEL_FILE).is_file()
    )


class CTranslate2ChatModel:
    """ChatModel over a CTranslate2 generator and the model's tokenizer (with its chat template).

    ``make_generator`` builds a generator (with an empty static-prompt cache); it is called once at load and again
    whenever the cache is full."""

    continues_prefix: Literal[True] = True  # ContinuesPrefix: honours GenerationOptions.reply_prefix

    def __init__(
        self,
        make_generator: Callable[[], Any],
        tokenizer: Any,
        settings: LLMSettings,
        *,
        max_static: int = 8,
        name: str = "",
    ) -> None:
        self._make_generator = make_generator
        self.generator = make_generator()
        self.tokenizer = tokenizer
        self.settings = settings
        self.name = name or settings.model
        self.max_static = max_static
        self._end_tokens = [t for t in (tokenizer.eos_token, "<|im_end|>") if t]
        self._static: list[tuple[str, ...]] = []  # prompt starts the current generator has cached
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # signalled when the last running generation ends
        self._running = 0
        self.generators_made = 1
        self.last_reused_tokens = 0
        self._reading: tuple[str, list[int]] | None = None  # the turn-end reading's template start, end tokens

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _text(self, messages: Sequence[ChatMessage], *, generation_prompt: bool) -> str:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return str(self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt))

    def _tokens(self, messages: Sequence[ChatMessage], *, generation_prompt: bool, prefix: str = "") -> list[str]:
        text = self._text(messages, generation_prompt=generation_prompt)
        ids = self.tokenizer(text + prefix, add_special_tokens=False)["input_ids"]
        return list(self.tokenizer.convert_ids_to_tokens(ids))

    def _cached_start(self, tokens: list[str]) -> tuple[Any, tuple[str, ...]]:
        """(generator, the longest cached prompt start that ``tokens`` begins with, or ()); counts a running
        generation until ``_done``."""
        with self._lock:
            if not self._idle.wait_for(lambda: self.generator is not None, timeout=60):
                raise ModelError(f"language model '{self.name}' could not be reloaded")
            self._running += 1
            best: tuple[str, ...] = ()
            for start in self._static:
                if len(best) < len(start) < len(tokens) and tuple(tokens[: len(start)]) == start:
                    best = start
            return self.generator, best

    def _done(self) -> None:
        """A generation or reading counted by ``_cached_start`` has ended."""
        with self._lock:
            self._running -= 1
            self._idle.notify_all()

    def stream(
        self, messages: Sequence[ChatMessage], stop: threading.Event, options: GenerationOptions | None = None
    ) -> Iterator[str]:
        """Yield text pieces of the reply (after ``options.reply_prefix``, when given). Blocking; stops soon after
        ``stop`` is set or the iterator closes. The penalty scope and the gate are ignored: CTranslate2's
        repetition penalty only ever counts the reply, and a generation cannot pause."""
        try:
            tokens = self._tokens(messages, generation_prompt=True, prefix=options.reply_prefix if options else "")
        except Exception as exc:
            raise ModelError(f"language model '{self.name}' could not encode the prompt") from exc
        generator, static = self._cached_start(tokens)
        try:
            yield from self._generate(generator, tokens, static, stop)
        finally:
            self._done()

    def _generate(
        self, generator: Any, tokens: list[str], static: tuple[str, ...], stop: threading.Event
    ) -> Iterator[str]:
        self.last_reused_tokens = len(static)
        s = self.settings
        sampling: dict[str, Any] = {"sampling_topk": 1}
        if s.temperature > 0:
            sampling = {"sampling_topk": 0, "sampling_topp": s.top_p, "sampling_temperature": s.temperature}
        steps = generator.generate_tokens(
            tokens[len(static) :],
            max_length=s.max_new_tokens,
            repetition_penalty=s.repetition_penalty,
            end_token=self._end_tokens,
            static_prompt=list(static) or None,
            **sampling,
        )
        ids: list[int] = []
        sent = ""
        try:
            for step in steps:
                if stop.is_set() or step.token in self._end_tokens:
                    break
                ids.append(step.token_id)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                    continue
                if len(text) > len(sent):
                    piece, sent = text[len(sent) :], text
                    yield piece
        except Exception as exc:
            raise ModelError(f"language model '{self.name}' failed while generating") from exc
        finally:
            steps.close()  # stops the decoding thread of CTranslate2

    def warm_prefix(self, messages: Sequence[ChatMessage]) -> int:
        """Cache the state of ``messages`` as a prompt start (system prompt, or system prompt + history) so the
        next prompt beginning with them prefills only the rest. Returns the tokens computed. Blocking."""
        if not messages:
            return 0
        try:
            start = tuple(self._tokens(messages, generation_prompt=False))
        except Exception as exc:
            raise ModelError(f"language model '{self.name}' could not encode the prompt") from exc
        with self._lock:
            if start in self._static:
                return 0
            if len(self._static) >= self.max_static:
                # CTranslate2 never evicts a static prompt: replace the generator once no generation runs.
                self._idle.wait_for(lambda: self._running == 0)
                self.generator, self._static = None, []
                gc.collect()
                try:
                    self.generator = self._make_generator()
                finally:
                    self._idle.notify_all()
                self.generators_made += 1
            generator = self.generator
            self._running += 1
        try:
            probe = self._tokens([ChatMessage("user", "Hi")], generation_prompt=True)
            for _ in generator.generate_tokens(probe, max_length=1, static_prompt=list(start)):
                pass
        finally:
            with self._lock:
                self._running -= 1
                self._idle.notify_all()
                if generator is self.generator and start not in self._static:
                    self._static.append(start)
        return len(start)

    def end_of_turn_probability(self, text: str) -> float:
        """How likely the person has finished their turn after saying ``text``: the model's probability that
        their message (or its sentence) ends right here, read before its final punctuation. One forward pass of
        the template's start and the words (no cached state: CTranslate2 keeps none for a forward pass); it
        queues behind a generation running on the same replica. Blocking."""
        words = words_to_read(text)
        if not words:
            return 0.0
        try:
            if self._reading is None:
                start = user_message_start(lambda messages: self._text(messages, generation_prompt=False))
                self._reading = (start, turn_end_ids(self.tokenizer))
            start, end_ids = self._reading
            ids = self.tokenizer(start + words, add_special_tokens=False)["input_ids"]
            generator, _ = self._cached_start([])  # counted as running, so it is not replaced meanwhile
            try:
                log_probs = generator.forward_batch([ids], return_log_probs=True)
            finally:
                self._done()
            if log_probs.device != "cpu":
                import ctranslate2

                log_probs = log_probs.to_device(ctranslate2.Device.cpu)
            last = np.asarray(log_probs)[0, -1].astype(np.float64)
            return float(np.exp(last[end_ids]).sum())
        except Exception as exc:
            raise ModelError(f"language model '{self.name}' could not judge the end of the turn") from exc

    def generate(self, messages: Sequence[ChatMessage]) -> str:
        return "".join(self.stream(messages, threading.Event()))

    def warmup(self) -> None:
        """One short generation, so the first real turn pays no first-call cost. Blocking."""
        stop = threading.Event()
        for n, _ in enumerate(self.stream([ChatMessage("user", "Hello.")], stop)):
            if n >= 3:
                break


def load(settings: LLMSettings) -> CTranslate2ChatModel:
    """Convert once if needed, then load the generator and tokenizer. Blocking."""
    try:
        import ctranslate2
        from transformers import AutoTokenizer

        options = ct2_options(settings)
        started = time.perf_counter()
        folder = ensure_ct2(settings)
        device = resolve_llm_device(settings.device)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))

        def make_generator() -> Any:
            return ctranslate2.Generator(
                str(folder),
                device=device,
                compute_type=options.compute_type if device == "cpu" else "default",
                inter_threads=options.replicas,
                intra_threads=options.threads,
            )

        chat = CTranslate2ChatModel(make_generator, tokenizer, settings, max_static=options.static_prompt_entries)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"language model '{settings.model}' (ctranslate2) failed to load: {exc}") from exc
    logger.info(
        "language model loaded",
        extra={"model": settings.model, "runtime": "ctranslate2", "seconds": round(time.perf_counter() - started, 2)},
    )
    return chat
