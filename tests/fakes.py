"""Scripted fakes of the model interfaces, for fast tests of the logic around the models."""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from backend.config import Settings
from backend.engines.model_service import ModelService
from backend.engines.protocols import (
    ChatMessage,
    EmotionResult,
    FloatAudio,
    GenerationOptions,
    SynthesizedSpeech,
    Transcription,
    VoiceStyle,
)

RATE = 16000


def tone_pcm(seconds: float, rate: int = RATE, freq: float = 220.0, amplitude: float = 0.5) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype("<i2").tobytes()


def silence_pcm(seconds: float, rate: int = RATE) -> bytes:
    return b"\x00\x00" * int(seconds * rate)


class Warms:
    """Counts ``warmup()`` calls (part of every engine protocol)."""

    warmups = 0

    def warmup(self) -> None:
        self.warmups += 1


@dataclass
class FakeSTT(Warms):
    transcript: str = "I feel a bit lost at work lately"
    error: Exception | None = None
    calls: list[float] = field(default_factory=list)

    def transcribe(self, audio: FloatAudio) -> Transcription:
        self.calls.append(len(audio) / RATE)
        if self.error is not None:
            raise self.error
        return Transcription(self.transcript, "en", len(audio) / RATE)


class FakeVAD:
    """Energy threshold: a tone is speech, digital silence is not."""

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        return bool(samples.size) and float(np.sqrt(np.mean(samples**2))) > 500.0


class FakeVADEngine(Warms):
    def new_detector(self) -> FakeVAD:
        return FakeVAD()


@dataclass
class FakeEmotion(Warms):
    label: str = "sad"
    confidence: float = 0.8
    calls: list[tuple[str, bool]] = field(default_factory=list)

    def detect(self, text: str, audio: FloatAudio | None = None) -> EmotionResult:
        self.calls.append((text, audio is not None))
        scores = {self.label: self.confidence, "neutral": 1 - self.confidence}
        return EmotionResult(self.label, self.confidence, scores)


@dataclass
class FakeLLM(Warms):
    """Streams ``reply`` word by word. With ``hold_after`` set, blocks after that many pieces until
    ``release`` is set or the stop event ends the generation (for barge-in tests). Pauses between words while
    its options' gate says so (like the transformers engine); ``produced`` records (user message, word index)
    in the order words are made, across generations."""

    pausable: ClassVar[Literal[True]] = True  # engines.protocols.Pausable, like the transformers engine

    reply: str = "That sounds hard. You are not alone in this. What feels heaviest right now?"
    hold_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    prompts: list[list[ChatMessage]] = field(default_factory=list)
    options: list[GenerationOptions | None] = field(default_factory=list)  # each stream's options
    produced: list[tuple[str, int]] = field(default_factory=list)
    error: Exception | None = None
    warmed: list[list[ChatMessage]] = field(default_factory=list)  # warm_prefix calls, oldest first
    warmed_event: threading.Event = field(default_factory=threading.Event)
    _warm_changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def stream(
        self, messages: Sequence[ChatMessage], stop: threading.Event, options: GenerationOptions | None = None
    ) -> Iterator[str]:
        self.prompts.append(list(messages))
        self.options.append(options)
        if self.error is not None:
            raise self.error
        words = self.reply.split(" ")
        gate = options.gate if options is not None else None
        for i, word in enumerate(words):
            if self.hold_after is not None and i == self.hold_after:
                while not (self.release.is_set() or stop.is_set()):
                    stop.wait(0.01)
            if gate is not None and gate.must_pause():
                gate.wait()
            if stop.is_set():
                self.stopped.set()
                return
            self.produced.append((messages[-1].content if messages else "", i))
            yield word if i == 0 else " " + word

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def warm_prefix(self, messages: Sequence[ChatMessage]) -> int:
        with self._warm_changed:
            self.warmed.append(list(messages))
            self.warmed_event.set()
            self._warm_changed.notify_all()
        return sum(len(m.content.split()) for m in messages)

    def wait_warmed(self, predicate: Callable[[list[list[ChatMessage]]], bool], timeout: float = 10.0) -> bool:
        """Wait until the warm_prefix calls so far satisfy ``predicate`` (False after ``timeout``)."""
        with self._warm_changed:
            return self._warm_changed.wait_for(lambda: predicate(self.warmed), timeout)


@dataclass
class FakeTTS(Warms):
    sample_rate: int = RATE
    seconds_per_word: float = 0.1
    texts: list[str] = field(default_factory=list)
    styles: list[VoiceStyle] = field(default_factory=list)  # the style of each synthesize call

    def synthesize(self, text: str, style: VoiceStyle) -> SynthesizedSpeech:
        self.texts.append(text)
        self.styles.append(style)
        words = len(text.split())
        return SynthesizedSpeech(tone_pcm(words * self.seconds_per_word, self.sample_rate, 330.0), self.sample_rate)


@dataclass
class FakeEmbedder:
    """Bag-of-words sentence embeddings: each word (lowercased, without a plural s) hashed into ``dim``
    buckets, rows L2-normalised. Texts sharing words are similar; with none in common, near 0."""

    dim: int = 256
    calls: list[list[str]] = field(default_factory=list)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z']+", text.lower()):
                out[row, zlib.crc32(word.removesuffix("s").encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        normalised: NDArray[np.float32] = (out / np.maximum(norms, 1e-9)).astype(np.float32)
        return normalised


@dataclass
class FakeModels:
    stt: FakeSTT = field(default_factory=FakeSTT)
    emotion: FakeEmotion = field(default_factory=FakeEmotion)
    llm: FakeLLM = field(default_factory=FakeLLM)
    tts: FakeTTS = field(default_factory=FakeTTS)
    embedder: FakeEmbedder | None = None  # memory is off without one (as with an emotion engine without embeddings)

    def service(self, settings: Settings) -> ModelService:
        return ModelService.from_components(
            settings,
            stt=self.stt,
            vad=FakeVADEngine(),
            emotion=self.emotion,
            llm=self.llm,
            tts=self.tts,
            embedder=self.embedder,
        )
