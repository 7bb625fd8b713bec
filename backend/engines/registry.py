"""Which engine implements each kind, chosen by config: ``stt.backend``, ``vad.backend``, ``emotion.backend``,
``llm.backend``, ``tts.backend`` name an entry here (name -> "module:loader", as uvicorn picks its protocols).

A new engine is one module with a ``load(section) -> Engine`` function plus a line in ``ENGINES``. Its module
may declare ``Options`` (a pydantic model): the keys of its config section that the section itself does not
know are validated against it, so engine-specific settings are typed and a typo is a startup error. Modules are
imported only when chosen, so an engine's heavy dependencies are never imported by a server that does not use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, ValidationError

from backend.config import Settings
from backend.core.exceptions import ConfigError
from backend.engines.protocols import (
    ChatModel,
    EmotionDetector,
    SafetyChecker,
    SpeechSynthesizer,
    SpeechToText,
    TextEmbedder,
    VoiceActivityEngine,
)

EngineT = TypeVar("EngineT")
OptionsT = TypeVar("OptionsT", bound=BaseModel)
Kind = Literal["stt", "vad", "emotion", "llm", "tts", "safety"]
KINDS: tuple[Kind, ...] = ("stt", "vad", "emotion", "llm", "tts", "safety")


@dataclass(frozen=True)
class EngineKind(Generic[EngineT]):
    """One kind of engine: the implementations to choose from, each by import path."""

    kind: Kind
    choices: Mapping[str, str]

    def path(self, backend: str) -> str:
        """The import path of ``backend``; ConfigError listing the choices when there is no such engine."""
        path = self.choices.get(backend)
        if path is None:
            raise ConfigError(
                f"unknown {self.kind}.backend {backend!r}; choose one of: {', '.join(sorted(self.choices))}"
            )
        return path

    def loader(self, section: BaseModel) -> Callable[[], EngineT]:
        """The chosen engine's loader for ``section`` (its config section), options already validated.

        Raises ConfigError naming the choices for an unknown backend, or the offending option."""
        backend = str(getattr(section, "backend", ""))
        module_name, _, attr = self.path(backend).partition(":")
        module = importlib.import_module(module_name)
        check_options(self.kind, backend, section, getattr(module, "Options", None))
        load = cast(Callable[[Any], EngineT], getattr(module, attr))
        return lambda: load(section)


def check_options(kind: str, backend: str, section: BaseModel, options: type[BaseModel] | None) -> BaseModel | None:
    """Validate the section's engine-specific keys against the engine's ``Options`` (None: it has none)."""
    if options is None:
        extra = dict(section.model_extra or {})
        if extra:
            raise ConfigError(f"unknown setting(s) for {kind} backend {backend!r}: {', '.join(sorted(extra))}")
        return None
    return engine_options(kind, backend, section, options)


def engine_options(kind: str, backend: str, section: BaseModel, options: type[OptionsT]) -> OptionsT:
    """The engine's own settings: the section's keys it does not declare, validated by the engine's model
    (which should forbid unknown keys). Raises ConfigError naming the offending key."""
    try:
        return options.model_validate(dict(section.model_extra or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{kind} backend {backend!r}: {where}: {first['msg']}") from None


STT: EngineKind[SpeechToText] = EngineKind("stt", {"whisper": "backend.engines.stt.whisper:load"})
VAD: EngineKind[VoiceActivityEngine] = EngineKind("vad", {"webrtc": "backend.engines.vad.webrtc:load"})
EMOTION: EngineKind[EmotionDetector] = EngineKind("emotion", {"fused": "backend.engines.emotion.fused:load"})
LLM: EngineKind[ChatModel] = EngineKind(
    "llm",
    {
        "transformers": "backend.engines.llm.transformers:load",
        "ctranslate2": "backend.engines.llm.ctranslate2:load",
        "openai": "backend.engines.llm.openai:load",  # a remote server speaking OpenAI Chat Completions
    },
)
TTS: EngineKind[SpeechSynthesizer] = EngineKind(
    "tts", {"espeak": "backend.engines.tts.espeak:load", "piper": "backend.engines.tts.piper:load"}
)


# The safety check (backend/engines/safety/) is given the sentence embeddings the emotion engine loaded.
SAFETY: EngineKind[Callable[[TextEmbedder | None], SafetyChecker]] = EngineKind(
    "safety",
    {
        "embedded": "backend.engines.safety.embedded:load",  # patterns + MiniLM against labelled examples
        "patterns": "backend.engines.safety.embedded:load_patterns",  # the patterns alone
    },
)


def safety_loader(section: BaseModel, embedder: TextEmbedder | None) -> Callable[[], SafetyChecker]:
    """The chosen safety engine's loader (``safety.backend``), given the embeddings it may use."""
    backend = str(getattr(section, "backend", ""))
    module_name, _, attr = SAFETY.path(backend).partition(":")
    module = importlib.import_module(module_name)
    load = cast(Callable[[Any, TextEmbedder | None], SafetyChecker], getattr(module, attr))
    return lambda: load(section, embedder)


def validate_backends(settings: Settings) -> None:
    """Fail fast at startup on an unknown backend name (before any model loads)."""
    SAFETY.path(settings.safety.backend)
    for kind in (STT, VAD, EMOTION, LLM, TTS):
        kind.path(getattr(settings, kind.kind).backend)
