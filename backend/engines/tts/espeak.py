"""Text to speech: pyttsx3 2.99 driving Debian espeak-ng (the default engine).

pyttsx3's espeak driver initialises libespeak-ng in asynchronous retrieval mode and has two races that make
it unreliable when used as documented (``save_to_file`` + ``runAndWait``):
- ``runAndWait`` returns as soon as synthesis has *started*; the WAV is written later, by espeak's own thread.
- a property change sits in espeak's command FIFO, so ``espeak_IsPlaying`` is true when ``runAndWait`` calls
  ``stop()``: the pending synthesis (and the rate/pitch change) are cancelled, giving empty or unstyled audio.
``EspeakSynthesizer`` keeps pyttsx3 and fixes both: it drains the FIFO (``espeak_Synchronize``) after setting
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
from backend.engines.protocols import SynthesizedSpeech, VoiceStyle

logger = logging.getLogger(__name__)

ESPEAK_RATE = 22050  # what libespeak-ng produces; confirmed from the WAV at warmup
KEEP_SILENCE_S = 0.05  # silence kept at each end after trimming
SILENCE_THRESHOLD = 200  # |sample| below this (about -44 dBFS) counts as silence
MIN_RATE, MAX_RATE = 80, 450  # words per minute espeak-ng accepts
WARMUP_TEXT = "Hello, I am here with you."


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


# The voice the process's one pyttsx3 engine is set to (every synthesizer shares that engine).
_current_voice: dict[str, str] = {}


# --- pyttsx3 + espeak-ng --------------------------------------------------------------------------------


class EspeakSynthesizer:
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
            # a voice that failed to load may be left half set on the process-wide engine: make the next
            # synthesis of any synthesizer set its own voice again
            _current_voice.pop("name", None)
            self.close()
            raise

    # all of these run on the engine thread

    def _init_engine(self) -> None:
        with _engine_lock:
            self._init_engine_locked()

    def _init_engine_locked(self) -> None:
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
            _current_voice["name"] = self._voice

    def _on_error(self, name: str | None = None, exception: BaseException | None = None) -> None:
        # pyttsx3 swallows exceptions of queued commands and reports them here
        self._errors.append(exception or RuntimeError("unknown pyttsx3 error"))

    def _raise_engine_error(self) -> None:
        if self._errors:
            error, self._errors = self._errors[0], []
            raise ModelError(f"pyttsx3 error: {error}") from error

    def _disconnect(self) -> None:
        with _engine_lock:
            self._disconnect_locked()

    def _disconnect_locked(self) -> None:
        for token in self._tokens:
            self._engine.disconnect(token)
        self._tokens = []

    def _on_finished(self, name: str | None = None, completed: bool = True) -> None:
        # called on espeak's thread once the WAV is written (or the utterance was cancelled)
        self._finished.set()

    def _set_voice(self, voice: str | None) -> None:
        """Switch the shared engine to ``voice`` (None: this synthesizer's own) when another one is set."""
        wanted = voice or self._voice
        if wanted is None or _current_voice.get("name") == wanted:
            return
        self._engine.setProperty("voice", wanted)
        self._raise_engine_error()
        _current_voice["name"] = wanted

    def _synthesize_on_engine_thread(self, text: str, style: VoiceStyle) -> tuple[bytes, int]:
        # Synthesizers of different voices run on their own threads but drive the one process-wide engine
        # (libespeak-ng is not thread-safe: two syntheses at once crashed the process): one at a time.
        with _engine_lock:
            return self._synthesize_locked(text, style)

    def _synthesize_locked(self, text: str, style: VoiceStyle) -> tuple[bytes, int]:
        engine = self._engine
        # pyttsx3 reports an error to every synthesizer connected to its one engine: what another one's command
        # raised (a voice that failed to load) is not this synthesis's error
        self._errors.clear()
        try:
            self._set_voice(style.voice)
        except ModelError:
            _current_voice.pop("name", None)
            raise ModelError(f"text-to-speech voice '{style.voice}' is not available") from None
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


_shared_espeak: dict[str | None, EspeakSynthesizer] = {}
_shared_lock = threading.Lock()
_engine_lock = threading.RLock()  # around every use of the process-wide pyttsx3 engine


def shared_espeak(voice: str | None) -> EspeakSynthesizer:
    """pyttsx3 keeps one engine per process, so every app in a process shares one synthesizer per voice."""
    with _shared_lock:
        synth = _shared_espeak.get(voice)
        if synth is None:
            synth = _shared_espeak[voice] = EspeakSynthesizer(voice=voice)
        return synth


def load(settings: TTSSettings) -> EspeakSynthesizer:
    """The shared espeak-ng synthesizer for the configured voice, warmed. Blocking; ModelLoadError on failure."""
    try:
        synth = shared_espeak(settings.voice)
        synth.warmup()
    except Exception as exc:
        logger.exception("text-to-speech engine failed to load")
        raise ModelLoadError(f"text-to-speech engine 'espeak' failed to load: {exc}") from exc
    return synth
