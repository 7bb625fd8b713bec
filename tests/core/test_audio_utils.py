"""PCM framing, resampling, sample-rate validation and WAV helpers."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from backend.core.audio_utils import (
    SUPPORTED_INPUT_RATES,
    PcmFramer,
    chunk_pcm,
    float32_to_pcm16,
    parse_wav,
    pcm16_to_float32,
    read_wav,
    resample,
    validate_sample_rate,
    wav_bytes,
    write_wav,
)
from backend.core.exceptions import UnsupportedSampleRateError

pytestmark = pytest.mark.fast


def _tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


def _random_chunks(data: bytes, rng: np.random.Generator, max_size: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        k = int(rng.integers(1, max_size))
        out.append(data[i : i + k])
        i += k
    return out


def test_odd_length_chunks_reassemble_exactly() -> None:
    """At 16 kHz, chunks of odd byte counts give frames that concatenate back to the input, byte for byte."""
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32767, 16000, dtype=np.int16).tobytes()
    framer = PcmFramer(16000, frame_ms=30)
    frames: list[bytes] = []
    chunks = [pcm[i : i + 7] for i in range(0, len(pcm), 7)]  # every chunk boundary splits a sample
    for chunk in chunks:
        frames += framer.push(chunk)
    assert all(len(f) == 960 for f in frames)
    tail = framer.flush(pad=False)
    assert b"".join(frames + tail) == pcm
    assert len(frames) == len(pcm) // 960


@pytest.mark.parametrize("rate", [16000, 44100, 48000, 8000])
def test_random_chunk_sizes_match_one_big_push(rate: int) -> None:
    """Frames do not depend on how the input was chunked, with and without resampling."""
    rng = np.random.default_rng(rate)
    pcm = float32_to_pcm16(0.3 * rng.standard_normal(rate // 2))
    one = PcmFramer(rate, frame_ms=20)
    expected = one.push(pcm) + one.flush()
    many = PcmFramer(rate, frame_ms=20)
    got: list[bytes] = []
    for chunk in _random_chunks(pcm, rng, 2000):
        got += many.push(chunk)
    got += many.flush()
    assert got == expected
    assert all(len(f) == 640 for f in got)
    assert len(got) == -(-8000 // 320)  # 0.5 s at 16 kHz in 20 ms frames, last one padded


def test_resample_48k_to_16k_keeps_tone_frequency_and_length() -> None:
    """A 440 Hz tone at 48 kHz resampled to 16 kHz is still 440 Hz, the same length and amplitude."""
    y = resample(_tone(440, 48000, 1.0), 48000, 16000)
    assert len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) * 16000 / len(y) == pytest.approx(440, abs=1)
    reference = _tone(440, 16000, 1.0)
    assert np.max(np.abs(y[100:-100] - reference[100:-100])) < 1e-3  # phase-aligned: filter delay removed


def test_resample_rejects_aliasing() -> None:
    """A 9 kHz tone (above the 8 kHz Nyquist of 16 kHz) is removed, not folded back into the band."""
    y = resample(_tone(9000, 48000, 0.5), 48000, 16000)
    assert np.sqrt(np.mean(y[200:-200] ** 2)) < 1e-3


def test_framer_resamples_44100_to_16k_frames() -> None:
    """The framer turns 44.1 kHz input into 16 kHz frames of the tone's frequency."""
    pcm = float32_to_pcm16(_tone(1000, 44100, 1.0))
    framer = PcmFramer(44100, frame_ms=30)
    out = pcm16_to_float32(b"".join(framer.push(pcm) + framer.flush()))
    assert abs(len(out) - 16000) < 480
    assert np.argmax(np.abs(np.fft.rfft(out[:16000]))) == pytest.approx(1000, abs=2)


@pytest.mark.parametrize("rate", [0, 12345, 96000, -16000, 16000.0, True])
def test_invalid_rate_raises_typed_error(rate: object) -> None:
    """Unsupported rates raise UnsupportedSampleRateError naming the supported rates."""
    with pytest.raises(UnsupportedSampleRateError, match="48000"):
        validate_sample_rate(rate)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedSampleRateError):
        PcmFramer(rate)  # type: ignore[arg-type]


def test_supported_rates_validate() -> None:
    """Every advertised rate is accepted and returned unchanged."""
    assert [validate_sample_rate(r) for r in SUPPORTED_INPUT_RATES] == list(SUPPORTED_INPUT_RATES)


def test_wav_round_trip(tmp_path: Path) -> None:
    """write_wav then read_wav returns the same PCM and rate; wav_bytes parses back too."""
    pcm = np.arange(-1000, 1000, dtype=np.int16).tobytes()
    path = tmp_path / "a.wav"
    write_wav(path, pcm, 22050)
    assert read_wav(path) == (pcm, 22050)
    assert parse_wav(wav_bytes(pcm, 8000)) == (pcm, 8000)


def _wav(body: bytes, tag: int, channels: int, rate: int, bits: int, data_size: int | None = None) -> bytes:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    size = len(body) if data_size is None else data_size
    chunks = b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", size) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_read_wav_downmixes_stereo_and_converts_depths() -> None:
    """Stereo is averaged; 8-, 24- and 32-bit integer and 32-bit float samples become 16-bit."""
    stereo = np.array([[1000, 3000], [-2000, 0]], dtype="<i2").tobytes()
    assert parse_wav(_wav(stereo, 1, 2, 16000, 16))[0] == np.array([2000, -1000], dtype="<i2").tobytes()
    eight = bytes([128, 192, 64])
    assert np.frombuffer(parse_wav(_wav(eight, 1, 1, 8000, 8))[0], "<i2").tolist() == [0, 16384, -16384]
    v24 = [0x400000, -0x400000]  # +-0.5
    b24 = b"".join((v & 0xFFFFFF).to_bytes(3, "little") for v in v24)
    assert np.frombuffer(parse_wav(_wav(b24, 1, 1, 8000, 24))[0], "<i2").tolist() == [16384, -16384]
    b32 = np.array([1 << 30, -(1 << 30)], dtype="<i4").tobytes()
    assert np.frombuffer(parse_wav(_wav(b32, 1, 1, 8000, 32))[0], "<i2").tolist() == [16384, -16384]
    f32 = np.array([0.25, -1.0], dtype="<f4").tobytes()
    assert np.frombuffer(parse_wav(_wav(f32, 3, 1, 8000, 32))[0], "<i2").tolist() == [8192, -32768]


def test_wav_with_streaming_header_sizes() -> None:
    """A data chunk whose declared size exceeds the file (espeak-ng --stdout) is read up to the end."""
    pcm = np.arange(100, dtype="<i2").tobytes()
    assert parse_wav(_wav(pcm, 1, 1, 22050, 16, data_size=0x7FFFF000)) == (pcm, 22050)


def test_chunk_pcm_splits_by_duration() -> None:
    """chunk_pcm gives chunks of chunk_ms with a shorter last one, concatenating to the input."""
    pcm = bytes(range(256)) * 13  # 3328 bytes = 1664 samples
    chunks = chunk_pcm(pcm, 16000, 20)
    assert [len(c) for c in chunks] == [640] * 5 + [128]
    assert b"".join(chunks) == pcm
