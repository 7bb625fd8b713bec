"""The small interfaces every model sits behind, and the plain data passed between pipeline stages.

Real implementations live in backend/engines/<kind>/<name>.py, picked by backend/engines/registry.py;
fakes for fast tests live in tests/fakes.py and implement the same protocols.
All model methods are blocking: callers run them in worker threads, never on the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "anxious", "angry", "surprised")

FloatAudio = NDArray[np.float32]  # mono float32 in [-1, 1], 16 kHz unless said otherwise


class Warmable(Protocol):
    """Every engine: ``warmup()`` runs once at load so the first turn pays no first-call cost."""

    def warmup(self) -> None: ...


# --- speech to text -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transcription:
    text: str
    language: str
    audio_seconds: float


class SpeechToText(Protocol):
    def transcribe(self, audio: FloatAudio) -> Transcription:
        """Transcribe 16 kHz mono float32 audio. Blocking."""
        ...

    def warmup(self) -> None:
        """Run once at load so the first turn pays no first-call cost. Blocking."""
        ...


# --- voice activity -------------------------------------------------------------------------------------


class VoiceActivityDetector(Protocol):
    """One connection's detector (it may keep state between frames)."""

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        """True if one PCM16 frame of 10, 20 or 30 ms holds speech."""
        ...


class VoiceActivityEngine(Protocol):
    """Makes a detector per connection."""

    def new_detector(self) -> VoiceActivityDetector: ...

    def warmup(self) -> None: ...


# --- emotion --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmotionEstimate:
    """One source's view: per-emotion scores summing to 1."""

    label: str
    confidence: float
    scores: dict[str, float]


@dataclass(frozen=True)
class ProsodyFeatures:
    duration_s: float
    rms_db: float
    pitch_hz: float
    pitch_std_hz: float
    voiced_ratio: float
    speaking_rate: float  # syllable-like energy peaks per second
    pause_ratio: float
    arousal: float  # 0 calm .. 1 aroused


@dataclass(frozen=True)
class EmotionResult:
    label: str
    confidence: float
    scores: dict[str, float]
    text: EmotionEstimate | None = None
    voice: EmotionEstimate | None = None
    prosody: ProsodyFeatures | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "label": self.label,
            "confidence": round(self.confidence, 3),
            "scores": {k: round(v, 3) for k, v in self.scores.items()},
        }
        if self.text is not None:
            out["text"] = {"label": self.text.label, "confidence": round(self.text.confidence, 3)}
        if self.voice is not None:
            out["voice"] = {"label": self.voice.label, "confidence": round(self.voice.confidence, 3)}
        if self.prosody is not None:
            p = self.prosody
            out["prosody"] = {
                "arousal": round(p.arousal, 3),
                "pitch_hz": round(p.pitch_hz, 1),
                "rms_db": round(p.rms_db, 1),
                "speaking_rate": round(p.speaking_rate, 2),
            }
        return out


class EmotionDetector(Protocol):
    def detect(self, text: str, audio: FloatAudio | None = None) -> EmotionResult:
        """Fuse the emotion of the words with the prosody of the voice (when audio is given). Blocking."""
        ...

    def warmup(self) -> None: ...


# --- language model -------------------------------------------------------------------------------------

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


PenaltyScope = Literal["reply", "prompt_and_reply"]


class GenerationGate(Protocol):
    """Lets a generation pause between tokens so another can run (pipeline/llm_scheduler.py). Called from the
    generation's own thread by engines that are Pausable."""

    def must_pause(self) -> bool: ...

    def wait(self) -> None:
        """Block until the generation may go on (or is stopped)."""
        ...


@dataclass(frozen=True)
class GenerationOptions:
    """Choices for one reply over the engine's settings (None: the engine's own). An engine that cannot honour
    one ignores it (its module says which)."""

    # Which tokens the repetition penalty counts: the reply so far, or the prompt too (which pushes the reply
    # away from the person's words and the system prompt's).
    repetition_penalty_scope: PenaltyScope | None = None
    # Checked between tokens by Pausable engines (transformers).
    gate: GenerationGate | None = field(default=None, compare=False)
    # The reply's first words, already chosen (an opening clause): the engine writes what follows them and
    # yields only that. Engines that are not ContinuesPrefix ignore it.
    reply_prefix: str = ""


@dataclass(frozen=True)
class EngineHealth:
    """What a remote engine's ``probe()`` found: whether its server answers, and if not, why."""

    reachable: bool
    detail: str | None = None


@runtime_checkable
class RemoteEngine(Protocol):
    """An engine served by another process (e.g. an LLM over HTTP): readiness asks it whether that server
    answers. In-process engines do not implement it."""

    def probe(self) -> EngineHealth:
        """Ask the server, with a short timeout. Blocking."""
        ...


class ChatModel(Protocol):
    """A chat LLM. What an engine can do beyond this it declares by implementing Pausable, ContinuesPrefix or
    TurnEndReader below; the pipeline does without what it cannot."""

    def stream(
        self, messages: Sequence[ChatMessage], stop: threading.Event, options: GenerationOptions | None = None
    ) -> Iterator[str]:
        """Yield text pieces of the reply as they are generated; stops soon after ``stop`` is set.

        Blocking: iterate it inside a worker thread.
        """
        ...

    def count_tokens(self, text: str) -> int: ...

    def warm_prefix(self, messages: Sequence[ChatMessage]) -> int:
        """Precompute ``messages`` as the start of a later prompt (a cache the next ``stream`` reuses), so that
        prompt only pays for what follows. Returns the tokens computed (0 if there is no cache). Blocking."""
        ...

    def warmup(self) -> None: ...


@runtime_checkable
class Pausable(Protocol):
    """A chat model that reads ``GenerationOptions.gate`` between tokens, so the LLM scheduler may pause its reply
    while another turn's first words are made (pipeline.first_words_first; transformers)."""

    pausable: Literal[True]


@runtime_checkable
class ContinuesPrefix(Protocol):
    """A chat model that honours ``GenerationOptions.reply_prefix``: it writes on from a given reply start (the
    spoken reply's opening clause; transformers, ctranslate2)."""

    continues_prefix: Literal[True]


@runtime_checkable
class BatchedDecoding(Protocol):
    """A chat model that decodes concurrent replies together, one token each per step (transformers); ``decoding``
    is how many are in its batch now (``/metrics``: claritymentor_llm_batch_size)."""

    @property
    def decoding(self) -> int: ...


@runtime_checkable
class TurnEndReader(Protocol):
    """A chat model that can also tell whether words are a finished turn (vad.turn_end_threshold; the engines
    share backend/engines/llm/turn_end.py). Engines without it (openai) leave turn ends to the hangover."""

    def end_of_turn_probability(self, text: str) -> float:
        """How likely ``text`` is a finished turn, 0..1. Blocking."""
        ...


# --- sentence embeddings ---------------------------------------------------------------------------------


@runtime_checkable
class TextEmbedder(Protocol):
    """Sentence embeddings (memory retrieval, insights). The emotion engine's MiniLM provides it, so the model
    is loaded once; an emotion engine without embeddings simply turns memory off."""

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised row per text, shape (len(texts), dim). Blocking."""
        ...


# --- text to speech -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceStyle:
    rate: int = 170  # words per minute
    pitch: int = 50  # 0..99
    volume: float = 1.0
    voice: str | None = None  # the engine's voice name (espeak-ng: e.g. "en-gb-x-rp", "en-us+f3"); None: its own


@dataclass(frozen=True)
class SynthesizedSpeech:
    pcm: bytes  # PCM16 little-endian mono
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


class SpeechSynthesizer(Protocol):
    sample_rate: int

    def synthesize(self, text: str, style: VoiceStyle) -> SynthesizedSpeech:
        """Speak ``text`` into PCM16 at ``sample_rate``. Blocking."""
        ...

    def warmup(self) -> None:
        """Synthesize once; may settle ``sample_rate``. Blocking."""
        ...


# --- safety ---------------------------------------------------------------------------------------------

SafetyCategory = Literal[
    "suicide", "self_harm", "abuse", "harm_to_others", "other_in_danger", "medical", "eating_disorder"
]
SAFETY_CATEGORIES: tuple[SafetyCategory, ...] = (
    "suicide",
    "self_harm",
    "abuse",
    "harm_to_others",
    "other_in_danger",
    "medical",
    "eating_disorder",
)
SafetyLevel = Literal["concern", "urgent"]


@dataclass(frozen=True)
class SafetyVerdict:
    """What the safety check found in one user message. ``urgent``: happening now or the means are at hand."""

    flagged: bool
    category: SafetyCategory | None = None
    level: SafetyLevel | None = None
    source: str = ""  # which rule or example decided (for tests and debugging; never shown to users)

    def to_dict(self) -> dict[str, object]:
        return {"flagged": self.flagged, "category": self.category, "level": self.level}


NOT_FLAGGED = SafetyVerdict(False)


class SafetyChecker(Protocol):
    """Reads every user message before the LLM, and every reply before it is spoken (backend/engines/safety/)."""

    def check_message(self, text: str) -> SafetyVerdict:
        """Whether ``text`` says someone is in danger, and how urgently. Blocking (a few ms)."""
        ...

    def check_reply(self, text: str) -> str | None:
        """Why a reply (or the part of it written so far) must not be sent, or None when it may. Blocking."""
        ...

    def unfinished_risk(self, text: str) -> bool:
        """Whether a reply cut mid-sentence ends in words an unsafe sentence would go on from ("It's natural
        to"): such a fragment waits for the rest of its sentence before the reply check reads it. Blocking."""
        ...

    def warmup(self) -> None: ...
