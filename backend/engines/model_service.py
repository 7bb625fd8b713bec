"""ModelService: loads every engine once per process (as ``<kind>.backend`` picks it), warms each up, and
reports their state.

Engine modules are imported only when chosen (backend/engines/registry.py), so fast tests, which inject fakes
with ``from_components``, never import torch, ctranslate2 or the embedding model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from backend.config import SafetySettings, Settings
from backend.core.devices import resolve_device
from backend.core.exceptions import ClarityError, ModelLoadError
from backend.engines import registry
from backend.engines.protocols import (
    ChatModel,
    EmotionDetector,
    EngineHealth,
    RemoteEngine,
    SafetyChecker,
    SpeechSynthesizer,
    SpeechToText,
    TextEmbedder,
    VoiceActivityDetector,
    VoiceActivityEngine,
    Warmable,
)

logger = logging.getLogger(__name__)
T = TypeVar("T", bound=Warmable)

ModelName = registry.Kind
MODEL_NAMES: tuple[ModelName, ...] = registry.KINDS


@dataclass
class ModelStatus:
    state: Literal["pending", "loading", "loaded", "failed"] = "pending"
    load_seconds: float | None = None
    detail: str | None = None


class ModelService:
    """Holds the loaded models; shared by every connection. Loading is blocking: run it in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.status: dict[str, ModelStatus] = {name: ModelStatus() for name in MODEL_NAMES}
        self.device = "cpu"
        self._stt: SpeechToText | None = None
        self._vad: VoiceActivityEngine | None = None
        self._emotion: EmotionDetector | None = None
        self._llm: ChatModel | None = None
        self._tts: SpeechSynthesizer | None = None
        self._embedder: TextEmbedder | None = None
        self._safety: SafetyChecker | None = None

    @classmethod
    def from_components(
        cls,
        settings: Settings,
        *,
        stt: SpeechToText,
        vad: VoiceActivityEngine,
        emotion: EmotionDetector,
        llm: ChatModel,
        tts: SpeechSynthesizer,
        embedder: TextEmbedder | None = None,
        safety: SafetyChecker | None = None,
    ) -> ModelService:
        """A service over already-built components (fakes in tests, or models loaded elsewhere). Without
        ``embedder`` the emotion engine's embeddings are used if it has them; without ``safety`` the configured
        safety engine is built over that embedder."""
        service = cls(settings)
        service._stt, service._vad, service._emotion = stt, vad, emotion
        service._llm, service._tts = llm, tts
        service._embedder = embedder if embedder is not None else _embedder_of(emotion)
        # Fakes' embeddings mean nothing: without a given checker, the patterns alone.
        service._safety = safety or registry.safety_loader(SafetySettings(backend="patterns"), None)()
        for status in service.status.values():
            status.state, status.load_seconds = "loaded", 0.0
        return service

    # --- accessors ---------------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return all(s.state == "loaded" for s in self.status.values())

    @property
    def stt(self) -> SpeechToText:
        return self._require(self._stt, "stt")

    @property
    def emotion(self) -> EmotionDetector:
        return self._require(self._emotion, "emotion")

    @property
    def llm(self) -> ChatModel:
        return self._require(self._llm, "llm")

    @property
    def tts(self) -> SpeechSynthesizer:
        return self._require(self._tts, "tts")

    @property
    def embedder(self) -> TextEmbedder | None:
        """Sentence embeddings for memory and insights: the emotion engine's model (loaded once), or None when
        the emotion engine has none (memory is then off)."""
        return self._embedder

    @property
    def safety(self) -> SafetyChecker:
        return self._require(self._safety, "safety")

    def new_vad(self) -> VoiceActivityDetector:
        return self._require(self._vad, "vad").new_detector()

    def remote_health(self) -> dict[str, EngineHealth]:
        """Probe every loaded engine that is served by another process (``RemoteEngine``), by kind. Blocking:
        each probe is one short request to its server."""
        engines: dict[str, object] = {
            "stt": self._stt,
            "vad": self._vad,
            "emotion": self._emotion,
            "llm": self._llm,
            "tts": self._tts,
        }
        return {name: engine.probe() for name, engine in engines.items() if isinstance(engine, RemoteEngine)}

    @staticmethod
    def _require(component: T | None, name: str) -> T:
        if component is None:
            raise ModelLoadError(f"model '{name}' is not loaded", code="model_not_ready", retryable=True)
        return component

    # --- loading -----------------------------------------------------------------------------------------

    def load_all(self) -> None:
        """Load and warm every engine in turn; raises ModelLoadError naming the first that fails, or ConfigError
        for an unknown backend or engine option."""
        s = self.settings
        registry.validate_backends(s)
        self.device = resolve_device(s.llm.device)
        self._stt = self._load("stt", registry.STT.loader(s.stt))
        self._vad = self._load("vad", registry.VAD.loader(s.vad))
        self._emotion = self._load("emotion", registry.EMOTION.loader(s.emotion))
        self._embedder = _embedder_of(self._emotion)
        self._llm = self._load("llm", registry.LLM.loader(s.llm))
        self._tts = self._load("tts", registry.TTS.loader(s.tts))
        self._safety = self._load("safety", registry.safety_loader(s.safety, self._embedder))

    def _load(self, name: ModelName, loader: Callable[[], T]) -> T:
        status = self.status[name]
        status.state = "loading"
        start = time.perf_counter()
        try:
            component = loader()
            component.warmup()
        except ClarityError as exc:
            status.state, status.detail = "failed", exc.message
            logger.error("model failed to load", extra={"model": name})
            raise
        except Exception as exc:
            status.state, status.detail = "failed", f"{type(exc).__name__}: {exc}"
            logger.error("model failed to load", extra={"model": name})
            raise ModelLoadError(f"model '{name}' failed to load: {type(exc).__name__}: {exc}") from exc
        status.state, status.load_seconds = "loaded", round(time.perf_counter() - start, 3)
        logger.info("model loaded", extra={"model": name, "load_seconds": status.load_seconds})
        return component


def _embedder_of(engine: object) -> TextEmbedder | None:
    return engine if isinstance(engine, TextEmbedder) else None
