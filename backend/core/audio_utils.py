"""Audio plumbing: PCM16 <-> float32, streaming resampling, fixed-size framing, WAV files.

All PCM here is 16-bit signed little-endian mono. Nothing in this module blocks on I/O except the WAV file
helpers; everything is cheap enough to run on the event loop for real-time audio.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from backend.core.exceptions import InvalidAudioError, UnsupportedSampleRateError

SUPPORTED_INPUT_RATES: tuple[int, ...] = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
TARGET_RATE = 16000

_ZERO_CROSSINGS = 16  # half-width of the sinc filter, in output-band zero crossings
_KAISER_BETA = 8.6  # about 80 dB stop-band attenuation
_CUTOFF = 0.92  # fraction of the lower Nyquist frequency kept
_MAX_LOOPED_PHASES = 8


def validate_sample_rate(rate: int) -> int:
    """Return ``rate`` if audio at that rate is accepted, else raise UnsupportedSampleRateError."""
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in SUPPORTED_INPUT_RATES:
        supported = ", ".join(str(r) for r in SUPPORTED_INPUT_RATES)
        raise UnsupportedSampleRateError(f"sample rate {rate!r} is not supported; use one of: {supported} Hz")
    return rate


def pcm16_to_float32(pcm: bytes) -> NDArray[np.float32]:
    """PCM16 bytes to float32 in [-1, 1). A trailing odd byte is ignored."""
    n = len(pcm) // 2
    ints = np.frombuffer(pcm, dtype="<i2", count=n)
    return (ints.astype(np.float32) / 32768.0).astype(np.float32)


def float32_to_pcm16(audio: NDArray[np.floating]) -> bytes:
    """Float audio in [-1, 1] to PCM16 bytes (clipped, rounded)."""
    scaled = np.rint(np.asarray(audio, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


def _design_filter(up: int, down: int) -> tuple[NDArray[np.float64], int, int]:
    """Kaiser-windowed sinc low-pass for the rate up/down, split into ``up`` phases of ``taps`` each.

    Returns (coef[phase, tap] with taps reversed for a dot product with ascending input, taps, delay).
    """
    ratio = max(up, down)
    taps = max(2, math.ceil(2 * _ZERO_CROSSINGS * ratio / up))
    length = taps * up
    delay = (length - 1) // 2
    fc = _CUTOFF * 0.5 / ratio  # cycles per sample of the upsampled signal
    k = np.arange(length, dtype=np.float64) - delay
    half = delay + 1.0
    window = np.i0(_KAISER_BETA * np.sqrt(np.clip(1.0 - (k / half) ** 2, 0.0, 1.0))) / np.i0(_KAISER_BETA)
    h = 2.0 * fc * np.sinc(2.0 * fc * k) * window
    h *= up / h.sum()
    phases = h.reshape(taps, up).T  # phases[p, j] = h[p + j * up]
    return np.ascontiguousarray(phases[:, ::-1]), taps, delay


class StreamingResampler:
    """Polyphase windowed-sinc resampler whose output does not depend on how the input was chunked.

    ``process`` returns every output sample computable from the input so far; ``flush`` returns the tail,
    so the total is ``ceil(n_in * dst / src)`` samples, aligned with the input (filter delay removed).
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError("sample rates must be positive")
        g = math.gcd(src_rate, dst_rate)
        self._up = dst_rate // g
        self._down = src_rate // g
        self._coef, self._taps, self._delay = _design_filter(self._up, self._down)
        self.reset()

    def reset(self) -> None:
        self._buf: NDArray[np.float64] = np.zeros(self._taps - 1)
        self._buf_start = -(self._taps - 1)  # stream index of _buf[0]; negative indices are zeros
        self._n_in = 0
        self._n_out = 0

    def process(self, x: NDArray[np.floating]) -> NDArray[np.float64]:
        if len(x):
            self._buf = np.concatenate([self._buf, np.asarray(x, dtype=np.float64)])
            self._n_in += len(x)
        return self._emit(self._n_in - 1, None)

    def flush(self) -> NDArray[np.float64]:
        """The remaining output; the resampler is then reset for a new stream."""
        total = -(-self._n_in * self._up // self._down)
        if total > self._n_out:
            last_needed = ((total - 1) * self._down + self._delay) // self._up
            missing = last_needed - (self._buf_start + len(self._buf) - 1)
            if missing > 0:
                self._buf = np.concatenate([self._buf, np.zeros(missing)])
            out = self._emit(last_needed, total)
        else:
            out = np.zeros(0)
        self.reset()
        return out

    def _emit(self, last_input: int, n_end_cap: int | None) -> NDArray[np.float64]:
        up, down, delay = self._up, self._down, self._delay
        # largest n with (n * down + delay) // up <= last_input
        n_end = (last_input * up + up - 1 - delay) // down + 1
        if n_end_cap is not None:
            n_end = min(n_end, n_end_cap)
        if n_end <= self._n_out:
            return np.zeros(0)
        t = np.arange(self._n_out, n_end, dtype=np.int64) * down + delay
        oldest = t // up - self._buf_start - self._taps + 1
        phase = t % up
        windows = sliding_window_view(self._buf, self._taps)
        out: NDArray[np.float64]
        if up <= _MAX_LOOPED_PHASES:  # one matrix-vector product per filter phase
            out = np.empty(len(t))
            for p in range(up):
                sel = phase == p
                if sel.any():
                    out[sel] = windows[oldest[sel]] @ self._coef[p]
        else:  # many phases (44.1 kHz, 22.05 kHz): gather each output's coefficients
            out = np.einsum("ij,ij->i", windows[oldest], self._coef[phase])
        self._n_out = n_end
        keep_from = (n_end * down + delay) // up - self._taps + 1 - self._buf_start
        if keep_from > 0:
            self._buf = self._buf[keep_from:]
            self._buf_start += keep_from
        return out


def resample(x: NDArray[np.floating], src_rate: int, dst_rate: int) -> NDArray[np.float32]:
    """Resample a whole float signal; the result has ``ceil(len(x) * dst / src)`` samples."""
    if src_rate == dst_rate:
        return np.asarray(x, dtype=np.float32).copy()
    rs = StreamingResampler(src_rate, dst_rate)
    head = rs.process(np.asarray(x, dtype=np.float64))
    return np.concatenate([head, rs.flush()]).astype(np.float32)


def resample_pcm16(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample PCM16 bytes."""
    if src_rate == dst_rate:
        return pcm[: len(pcm) // 2 * 2]
    return float32_to_pcm16(resample(pcm16_to_float32(pcm), src_rate, dst_rate))


class PcmFramer:
    """Turns PCM16 chunks of any size (odd byte counts included) into frames of exactly ``frame_ms``.

    Input at ``input_rate`` is resampled to ``output_rate`` on the fly. ``push`` never raises on odd input
    sizes: a dangling byte is carried over to the next push.
    """

    def __init__(self, input_rate: int, frame_ms: int = 30, output_rate: int = TARGET_RATE) -> None:
        self.input_rate = validate_sample_rate(input_rate)
        self.output_rate = output_rate
        self.frame_ms = frame_ms
        self.frame_bytes = output_rate * frame_ms // 1000 * 2
        if self.frame_bytes <= 0 or output_rate * frame_ms % 1000:
            raise ValueError("frame_ms must give a whole number of samples")
        self._resampler = StreamingResampler(input_rate, output_rate) if input_rate != output_rate else None
        self._carry = b""  # odd input byte
        self._pending = bytearray()  # output-rate PCM16 shorter than one frame

    def push(self, data: bytes) -> list[bytes]:
        """Add a chunk; return the complete frames now available."""
        raw = self._carry + bytes(data)
        even = len(raw) // 2 * 2
        self._carry = raw[even:]
        if self._resampler is None:
            self._pending += raw[:even]
        elif even:
            out = self._resampler.process(pcm16_to_float32(raw[:even]))
            self._pending += float32_to_pcm16(out)
        return self._take_frames()

    def flush(self, pad: bool = True) -> list[bytes]:
        """End of stream: the remaining frames, then the partial last one (zero-padded to a full frame when
        ``pad``, else shorter); the framer is then reset for a new stream. A dangling odd byte is dropped."""
        if self._resampler is not None:
            self._pending += float32_to_pcm16(self._resampler.flush())
        frames = self._take_frames()
        if self._pending:
            padding = b"\x00" * (self.frame_bytes - len(self._pending)) if pad else b""
            frames.append(bytes(self._pending) + padding)
        self._pending.clear()
        self._carry = b""
        return frames

    def _take_frames(self) -> list[bytes]:
        n = len(self._pending) // self.frame_bytes
        if n == 0:
            return []
        fb = self.frame_bytes
        frames = [bytes(self._pending[i * fb : (i + 1) * fb]) for i in range(n)]
        del self._pending[: n * fb]
        return frames


def chunk_pcm(pcm: bytes, rate: int, chunk_ms: int) -> list[bytes]:
    """Split PCM16 into chunks of ``chunk_ms`` (the last one may be shorter)."""
    size = max(2, rate * chunk_ms // 1000 * 2)
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


# --- WAV ------------------------------------------------------------------------------------------------

_FORMAT_PCM = 1
_FORMAT_FLOAT = 3
_FORMAT_EXTENSIBLE = 0xFFFE


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """A complete 16-bit mono WAV file holding ``pcm``."""
    pcm = pcm[: len(pcm) // 2 * 2]
    fmt = struct.pack("<HHIIHH", _FORMAT_PCM, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def parse_wav(data: bytes) -> tuple[bytes, int]:
    """Decode WAV bytes (PCM 8/16/24/32-bit or float, any channel count) to (PCM16 mono, rate).

    Tolerates the bogus sizes written by streaming encoders (``espeak-ng --stdout``).
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InvalidAudioError("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None  # format, channels, rate, bits
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise InvalidAudioError("WAV fmt chunk is too short")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _FORMAT_EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise InvalidAudioError("WAV data chunk comes before its fmt chunk")
            return _decode_samples(body, *fmt), fmt[2]
        pos += 8 + size + (size & 1)
    raise InvalidAudioError("WAV file has no data chunk")


def _decode_samples(body: bytes, tag: int, channels: int, rate: int, bits: int) -> bytes:
    if channels < 1 or rate <= 0:
        raise InvalidAudioError("WAV header has no channels or no sample rate")
    width = bits // 8
    frame = width * channels
    body = body[: len(body) // frame * frame] if frame else b""
    x: NDArray[np.float64]
    if tag == _FORMAT_PCM and bits == 8:
        x = (np.frombuffer(body, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif tag == _FORMAT_PCM and bits == 16:
        x = np.frombuffer(body, dtype="<i2").astype(np.float64) / 32768.0
    elif tag == _FORMAT_PCM and bits == 24:
        b = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    elif tag == _FORMAT_PCM and bits == 32:
        x = np.frombuffer(body, dtype="<i4").astype(np.float64) / float(1 << 31)
    elif tag == _FORMAT_FLOAT and bits in (32, 64):
        x = np.frombuffer(body, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
    else:
        raise InvalidAudioError(f"unsupported WAV encoding (format {tag}, {bits} bits)")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return float32_to_pcm16(x)


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """Read a WAV file as (PCM16 mono bytes, sample rate); stereo is downmixed. Blocking file I/O."""
    return parse_wav(Path(path).read_bytes())


def write_wav(path: str | Path, pcm: bytes, rate: int) -> None:
    """Write PCM16 mono as a WAV file. Blocking file I/O."""
    Path(path).write_bytes(wav_bytes(pcm, rate))
