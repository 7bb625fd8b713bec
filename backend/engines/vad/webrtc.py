"""WebRTC voice activity detection (webrtcvad-wheels): no weights, a few microseconds per frame."""

from __future__ import annotations

import logging

import webrtcvad
from pydantic import BaseModel, ConfigDict, Field

from backend.config import VADSettings
from backend.engines.registry import engine_options

logger = logging.getLogger(__name__)

VAD_RATES: tuple[int, ...] = (8000, 16000, 32000, 48000)
VAD_FRAME_MS: tuple[int, ...] = (10, 20, 30)


def valid_vad_frame(frame: bytes, sample_rate: int) -> bool:
    """Whether webrtcvad accepts a frame of this length at this rate."""
    if sample_rate not in VAD_RATES:
        return False
    return any(len(frame) == sample_rate * ms // 1000 * 2 for ms in VAD_FRAME_MS)


class WebRtcVad:
    """VoiceActivityDetector over webrtcvad. Never raises: a frame it cannot judge counts as silence.

    Not thread-safe (webrtcvad keeps per-stream state): give each connection its own instance.
    """

    def __init__(self, aggressiveness: int = 2) -> None:
        if not 0 <= aggressiveness <= 3:
            raise ValueError("aggressiveness must be 0..3")
        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        if not valid_vad_frame(frame, sample_rate):
            logger.debug("frame rejected by VAD guard", extra={"bytes": len(frame), "rate": sample_rate})
            return False
        try:
            return bool(self._vad.is_speech(frame, sample_rate))
        except Exception:  # webrtcvad raises a bare Error
            logger.debug("webrtcvad rejected a frame", exc_info=True)
            return False


class WebRtcVadEngine:
    """Makes one webrtcvad detector per connection (each keeps its own state)."""

    def __init__(self, aggressiveness: int = 2) -> None:
        self.aggressiveness = aggressiveness

    def new_detector(self) -> WebRtcVad:
        return WebRtcVad(self.aggressiveness)

    def warmup(self) -> None:
        self.new_detector().is_speech(b"\x00\x00" * 480, 16000)


class Options(BaseModel):
    """webrtcvad's own setting (``vad.aggressiveness``): 0 lets most sound through as speech, 3 the least."""

    model_config = ConfigDict(extra="forbid")
    aggressiveness: int = Field(2, ge=0, le=3)


def load(settings: VADSettings) -> WebRtcVadEngine:
    return WebRtcVadEngine(engine_options("vad", "webrtc", settings, Options).aggressiveness)
