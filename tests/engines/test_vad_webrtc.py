"""WebRtcVad guards and the per-connection factory (webrtcvad has no weights: fast)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.config import VADSettings
from backend.engines.vad.webrtc import WebRtcVad, valid_vad_frame
from backend.engines.vad.webrtc import load as load_vad

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("length", "rate"),
    [(100, 16000), (962, 16000), (0, 16000), (960, 22050), (960, 44100), (1, 8000)],
)
def test_bad_frames_return_false_instead_of_raising(length: int, rate: int) -> None:
    """Frames of a length or rate webrtcvad rejects give False (webrtcvad itself would raise)."""
    assert WebRtcVad(3).is_speech(b"\x10" * length, rate) is False


def test_valid_frame_sizes() -> None:
    """10/20/30 ms at 8/16/32/48 kHz are accepted by the guard; 40 ms is not."""
    assert valid_vad_frame(b"\x00" * 320, 16000)
    assert valid_vad_frame(b"\x00" * 2880, 48000)
    assert not valid_vad_frame(b"\x00" * 1280, 16000)


def test_silence_and_noise_are_not_speech() -> None:
    """Digital silence is silence; low white noise is silence once webrtcvad has adapted (<= 150 ms)."""
    vad = WebRtcVad(2)
    assert not any(vad.is_speech(b"\x00" * 960, 16000) for _ in range(50))
    noisy = WebRtcVad(2)
    pcm = (np.random.default_rng(0).standard_normal(48000) * 100).astype("<i2").tobytes()
    flags = [noisy.is_speech(pcm[i : i + 960], 16000) for i in range(0, len(pcm), 960)]
    assert not any(flags[5:])


def test_factory_gives_separate_instances() -> None:
    """The webrtc engine makes a new detector for each connection (per-connection state)."""
    engine = load_vad(VADSettings(aggressiveness=1))
    a, b = engine.new_detector(), engine.new_detector()
    assert a is not b and isinstance(a, WebRtcVad)


def test_invalid_aggressiveness() -> None:
    """Aggressiveness outside 0..3 is refused at construction."""
    with pytest.raises(ValueError):
        WebRtcVad(4)
