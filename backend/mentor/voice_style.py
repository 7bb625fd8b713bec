"""The mentor's voice follows the person's emotion: a speaking rate, pitch and volume per detected emotion, around
the persona's own voice (engine voice, rate and pitch; ``tts.*`` where the persona sets none)."""

from __future__ import annotations

import numpy as np

from backend.config import TTSSettings
from backend.engines.protocols import VoiceStyle
from backend.mentor.personas import PersonaVoice

MIN_RATE, MAX_RATE = 80, 450  # words per minute espeak-ng accepts

# emotion -> (rate factor, pitch offset, volume factor)
_EMOTION_STYLE: dict[str, tuple[float, int, float]] = {
    "neutral": (1.0, 0, 1.0),
    "sad": (0.85, -8, 0.85),  # slower, a bit lower and softer
    "anxious": (0.88, -4, 0.95),  # slower, calm, steady
    "angry": (0.85, -10, 0.9),  # slow, low, even
    "happy": (1.08, 6, 1.0),  # a little faster and brighter
    "surprised": (1.03, 4, 1.0),  # slightly brighter
}


def voice_style_for(emotion: str, settings: TTSSettings, persona: PersonaVoice | None = None) -> VoiceStyle:
    """The mentor's voice for a person feeling ``emotion``; unknown labels get the neutral voice."""
    rate_factor, pitch_offset, volume_factor = _EMOTION_STYLE.get(emotion, _EMOTION_STYLE["neutral"])
    own = persona or PersonaVoice()
    rate = own.rate if own.rate is not None else settings.rate
    pitch = own.pitch if own.pitch is not None else settings.pitch
    return VoiceStyle(
        rate=int(np.clip(round(rate * rate_factor), MIN_RATE, MAX_RATE)),
        pitch=int(np.clip(pitch + pitch_offset, 0, 99)),
        volume=float(np.clip(settings.volume * volume_factor, 0.0, 2.0)),
        voice=own.voice,
    )
