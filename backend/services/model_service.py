"""ModelService: loads every model once per process, warms each up, and reports their state.

The real loaders are imported lazily so fast tests (which inject fakes with ``from_components``) never import
torch, ctranslate2 or the embedding model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from backend.config import Settings
from backend.core.exceptions import ClarityError, ModelLoadError
from backend.services.interfaces import (
    ChatModel,
    EmotionDetector,
    SpeechSynthesizer,
    SpeechToText,
    VoiceActivityDetector,
)
from backend.services.prompt_builder import MentorPrompt, load_mentor_prompt

logger = logging.getLogger(__name__)
T = TypeVar("T")

ModelName = Literal["stt", "vad", "emotion", "llm", "tts"]
MODEL_NAMES: tuple[ModelName, ...] = ("stt", "vad", "emotion", "llm", "tts")


@dataclass
class ModelStatus:
    state: Literal["pending", "loading", "loaded", "failed"] = "pending"
    load_seconds: float | None = None
    detail: str | None = None


def _warm(component: object) -> None:
    warmup = getattr(component, "warmup", None)
    if callable(warmup):
        warmup()


class ModelService:
    """Holds the loaded models; shared by every connection. Loading is blocking: run it in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.status: dict[str, ModelStatus] = {name: ModelStatus() for name in MODEL_NAMES}
        self.device = "cpu"
        self._stt: SpeechToText | None = None
        self._vad_factory: Callable[[], VoiceActivityDetector] | None = None
        self._emotion: EmotionDetector | None = None
        self._llm: ChatModel | None = None
        self._tts: SpeechSynthesizer | None = None
        self.mentor_prompt: MentorPrompt = load_mentor_prompt(settings.mentor)

    @classmethod
    def from_components(
        cls,
        settings: Settings,
        *,
        stt: SpeechToText,
        vad_factory: Callable[[], VoiceActivityDetector],
        emotion: EmotionDetector,
        llm: ChatModel,
        tts: SpeechSynthesizer,
        mentor_prompt: MentorPrompt | None = None,
    ) -> ModelService:
        """A service over already-built components (fakes in tests, or models loaded elsewhere)."""
        service = cls(settings)
        service._stt, service._vad_factory, service._emotion = stt, vad_factory, emotion
        service._llm, service._tts = llm, tts
        if mentor_prompt is not None:
            service.mentor_prompt = mentor_prompt
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

    def new_vad(self) -> VoiceActivityDetector:
        return self._require(self._vad_factory, "vad")()

    @staticmethod
    def _require(component: T | None, name: str) -> T:
        if component is None:
            raise ModelLoadError(f"model '{name}' is not loaded", code="model_not_ready", retryable=True)
        return component

    # --- loading -----------------------------------------------------------------------------------------

    def load_all(self) -> None:
        """Load and warm every model in turn; raises ModelLoadError naming the first that fails."""
        from backend.core.devices import resolve_device
        from backend.services.emotion_service import load_emotion
        from backend.services.llm_service import load_llm
        from backend.services.stt_service import load_stt
        from backend.services.tts_service import load_tts
        from backend.services.vad_service import load_vad

        s = self.settings
        self.device = resolve_device(s.llm.device)
        self._stt = self._load("stt", lambda: load_stt(s.stt))
        self._vad_factory = self._load("vad", lambda: load_vad(s.vad))
        self._emotion = self._load("emotion", lambda: load_emotion(s.emotion, resolve_device(s.emotion.device)))
        self._llm = self._load("llm", lambda: load_llm(s.llm))
        self._tts = self._load("tts", lambda: load_tts(s.tts))

    def _load(self, name: ModelName, loader: Callable[[], Any]) -> Any:
        status = self.status[name]
        status.state = "loading"
        start = time.perf_counter()
        try:
            component = loader()
            _warm(component)
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
