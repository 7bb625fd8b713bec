"""One /v1/realtime connection's session: its audio formats, turn detection and modalities, as the client set
them with ``session.update``, and the audio conversion at the edge (our core stays 16 kHz PCM16).

Input: base64 -> G.711 decoded to PCM16 when needed -> the Conversation at the format's rate (its framer
resamples to 16 kHz). Output: the TTS's PCM16 -> resampled (streaming, per response) to the format's rate ->
G.711 encoded when needed -> base64.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Literal

from backend.config import Settings
from backend.core import g711
from backend.core.audio_utils import (
    SUPPORTED_INPUT_RATES,
    StreamingResampler,
    float32_to_pcm16,
    pcm16_to_float32,
)
from backend.core.exceptions import InvalidAudioError, InvalidInputError
from backend.pipeline.turn_taking import TurnTaking
from backend.protocol.realtime import AudioFormat, SessionConfig, TurnDetection

PCM_RATE = 24000  # the API's only PCM rate; others of SUPPORTED_INPUT_RATES are accepted as an extension
G711_RATE = 8000


class UnsupportedFormatError(InvalidInputError):
    code = "unsupported_audio_format"


@dataclass(frozen=True)
class AudioCodec:
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: int = PCM_RATE

    @classmethod
    def of(cls, fmt: AudioFormat) -> AudioCodec:
        if fmt.type == "audio/pcm":
            rate = fmt.rate or PCM_RATE
            if rate not in SUPPORTED_INPUT_RATES:
                rates = ", ".join(str(r) for r in SUPPORTED_INPUT_RATES)
                raise UnsupportedFormatError(f"audio/pcm at {rate} Hz is not supported; use 24000 (or {rates})")
            return cls("audio/pcm", rate)
        if fmt.rate not in (None, G711_RATE):
            raise UnsupportedFormatError(f"{fmt.type} is 8000 Hz only")
        return cls(fmt.type, G711_RATE)

    @property
    def law(self) -> g711.Law | None:
        return {"audio/pcmu": "ulaw", "audio/pcma": "alaw"}.get(self.type)  # type: ignore[return-value]

    def bytes_per_second(self) -> int:
        return self.rate * (1 if self.law else 2)

    def decode(self, audio_b64: str) -> bytes:
        """base64 audio in this format -> PCM16 at ``rate``. Raises InvalidAudioError on bad base64."""
        try:
            data = base64.b64decode(audio_b64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidAudioError("input_audio_buffer.append: audio is not valid base64") from None
        law = self.law
        return g711.decode(data, law) if law else data

    def render(self) -> dict[str, Any]:
        return {"type": self.type, "rate": self.rate} if self.type == "audio/pcm" else {"type": self.type}


class OutputEncoder:
    """PCM16 at ``src_rate`` -> base64 audio in ``codec``, resampled as a stream (chunking does not matter)."""

    def __init__(self, codec: AudioCodec, src_rate: int) -> None:
        self.codec = codec
        self._resampler = StreamingResampler(src_rate, codec.rate) if src_rate != codec.rate else None
        self.bytes_out = 0  # encoded bytes produced

    def encode(self, pcm: bytes) -> str:
        if self._resampler is not None:
            pcm = float32_to_pcm16(self._resampler.process(pcm16_to_float32(pcm)))
        return self._finish(pcm)

    def flush(self) -> str:
        if self._resampler is None:
            return ""
        return self._finish(float32_to_pcm16(self._resampler.flush()))

    def _finish(self, pcm: bytes) -> str:
        law = self.codec.law
        data = g711.encode(pcm, law) if law else pcm
        self.bytes_out += len(data)
        return base64.b64encode(data).decode("ascii") if data else ""

    @property
    def seconds(self) -> float:
        return self.bytes_out / self.codec.bytes_per_second()


@dataclass
class RealtimeSession:
    model: str
    mentor_session_id: str = ""
    resumed: bool = False
    instructions: str | None = None
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    input_codec: AudioCodec = field(default_factory=AudioCodec)
    output_codec: AudioCodec = field(default_factory=AudioCodec)
    turn_detection: TurnDetection | None = field(default_factory=lambda: TurnDetection(type="server_vad"))
    transcription: dict[str, Any] | None = None
    voice: str = "mentor"
    speed: float = 1.0

    @property
    def speaks(self) -> bool:
        return "audio" in self.output_modalities

    def apply(self, update: SessionConfig) -> None:
        """Merge a session.update (fields it leaves out are kept). Validates everything before changing anything."""
        audio = update.audio
        audio_in = audio.input if audio is not None else None
        audio_out = audio.output if audio is not None else None
        input_codec = AudioCodec.of(audio_in.format) if audio_in is not None and audio_in.format else None
        output_codec = AudioCodec.of(audio_out.format) if audio_out is not None and audio_out.format else None
        modalities = update.output_modalities
        if modalities is not None and len(set(modalities)) != 1:
            raise InvalidInputError("output_modalities must be ['audio'] or ['text']", code="invalid_value")
        if update.model:
            self.model = update.model
        if "instructions" in update.model_fields_set:
            self.instructions = update.instructions
        if modalities is not None:
            self.output_modalities = list(modalities)
        self.input_codec = input_codec or self.input_codec
        self.output_codec = output_codec or self.output_codec
        if audio_in is not None:
            if "turn_detection" in audio_in.model_fields_set:
                self.turn_detection = audio_in.turn_detection
            if "transcription" in audio_in.model_fields_set:
                self.transcription = audio_in.transcription
        if audio_out is not None:
            self.voice = audio_out.voice or self.voice
            self.speed = audio_out.speed or self.speed

    def turn_taking(self) -> TurnTaking:
        td = self.turn_detection
        if td is None:
            return TurnTaking(detect_turns=False, respond=False, barge_in=False, speak=self.speaks)
        return TurnTaking(
            detect_turns=True,
            respond=td.create_response is not False,
            barge_in=td.interrupt_response is not False,
            speak=self.speaks,
        )

    def render(self, settings: Settings, session_id: str) -> dict[str, Any]:
        """The session object of session.created / session.updated, with our extension ``claritymentor``."""
        td = self.turn_detection
        detection: dict[str, Any] | None = None
        if td is not None:
            detection = {
                "type": td.type,
                "create_response": td.create_response is not False,
                "interrupt_response": td.interrupt_response is not False,
            }
            if td.type == "server_vad":  # what our VAD really uses (not settable per session)
                detection["prefix_padding_ms"] = settings.vad.preroll_ms
                detection["silence_duration_ms"] = settings.vad.hangover_ms
            else:
                detection["eagerness"] = "auto"
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": self.model,
            "output_modalities": self.output_modalities,
            "instructions": self.instructions,
            "audio": {
                "input": {
                    "format": self.input_codec.render(),
                    "transcription": self.transcription,
                    "turn_detection": detection,
                    "noise_reduction": None,
                },
                "output": {"format": self.output_codec.render(), "voice": self.voice, "speed": self.speed},
            },
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": settings.llm.max_new_tokens,
            "claritymentor": {"session_id": self.mentor_session_id, "resumed": self.resumed},
        }
