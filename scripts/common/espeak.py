"""Synthetic test speech from the espeak-ng command line (Debian package ``espeak-ng``).

Used by tests, ``test_client.py --say`` and the benchmark; not by the server's TTS. Blocking (subprocess).
"""

from __future__ import annotations

import logging
import shutil
import subprocess

from backend.core.audio_utils import parse_wav, resample_pcm16
from backend.core.exceptions import ClarityError

logger = logging.getLogger(__name__)

ESPEAK_BINARY = "espeak-ng"


class EspeakError(ClarityError):
    code = "espeak_failed"


def espeak_available() -> bool:
    return shutil.which(ESPEAK_BINARY) is not None


def speak_pcm(
    text: str,
    *,
    voice: str = "en-us",
    rate: int = 160,
    pitch: int = 50,
    amplitude: int = 100,
    sample_rate: int = 16000,
    timeout_s: float = 30.0,
) -> bytes:
    """Speak ``text`` with espeak-ng; return PCM16 mono at ``sample_rate``. Blocking.

    The text goes through stdin, so text starting with "-" is not taken for an option.
    """
    binary = shutil.which(ESPEAK_BINARY)
    if binary is None:
        raise EspeakError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    cmd = [binary, "--stdout", "-v", voice, "-s", str(rate), "-p", str(pitch), "-a", str(amplitude)]
    try:
        proc = subprocess.run(cmd, input=text.encode(), capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EspeakError(f"espeak-ng took longer than {timeout_s} s") from exc
    if proc.returncode != 0 or not proc.stdout:
        logger.warning("espeak-ng failed", extra={"returncode": proc.returncode})
        err = proc.stderr.decode(errors="replace").strip()[:200]
        raise EspeakError(f"espeak-ng failed (exit {proc.returncode}): {err or 'no audio produced'}")
    pcm, native_rate = parse_wav(proc.stdout)
    return resample_pcm16(pcm, native_rate, sample_rate)
