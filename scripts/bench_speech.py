"""Benchmark utterances: seeded mentor-style sentences spoken by espeak-ng, trimmed to their voiced part.

Used by scripts/bench_latency.py. Blocking (espeak-ng subprocess per utterance).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from scripts.speech_tools.espeak import speak_pcm

SAMPLE_RATE = 16000
CHUNK_MS = 20
CHUNK_BYTES = SAMPLE_RATE * CHUNK_MS // 1000 * 2

# One sentence each (no full stop inside), so a pause between sentences cannot end the turn early.
SENTENCES: tuple[str, ...] = (
    "I feel a bit lost at work lately",
    "How do I stop procrastinating on my thesis",
    "My manager never seems happy with what I do",
    "I got the job offer today and I am so excited",
    "I keep comparing myself to my friends and it makes me feel small",
    "What should I focus on first when everything feels urgent",
    "I am nervous about the presentation tomorrow morning",
    "I failed the exam again and I do not know what to do",
    "How can I build a habit of reading every day",
    "My team ignored my idea in the meeting and I am angry about it",
    "I want to change careers but I am scared of starting over",
    "Can you help me plan a calmer week",
    "I finally finished the project I was worried about",
    "Why do I always feel tired even after a long sleep",
    "I am thinking about moving to a new city for a fresh start",
    "How do I tell my friend that I need more space",
)
VOICES: tuple[str, ...] = ("en-us", "en+f3", "en+m3", "en-gb", "en-us+f2", "en+m7")
RATES: tuple[int, ...] = (145, 160, 175, 190)
PITCHES: tuple[int, ...] = (35, 50, 65)


@dataclass(frozen=True)
class Utterance:
    """One spoken sentence: ``pcm`` is PCM16 mono 16 kHz from its first to its last voiced 20 ms chunk."""

    text: str
    voice: str
    rate: int
    pitch: int
    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / SAMPLE_RATE

    def describe(self) -> dict[str, object]:
        return {
            "text": self.text,
            "voice": self.voice,
            "rate": self.rate,
            "pitch": self.pitch,
            "speech_s": round(self.seconds, 3),
        }


def trim_to_voiced(pcm: bytes, threshold_rms: float = 300.0) -> bytes:
    """Cut leading and trailing near-silence, keeping whole 20 ms chunks; the result ends at a chunk edge."""
    samples = np.frombuffer(pcm[: len(pcm) // CHUNK_BYTES * CHUNK_BYTES], dtype="<i2").astype(np.float32)
    if samples.size == 0:
        return b""
    frames = samples.reshape(-1, CHUNK_BYTES // 2)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    voiced = np.flatnonzero(rms > threshold_rms)
    if voiced.size == 0:
        return b""
    first, last = int(voiced[0]), int(voiced[-1]) + 1
    return pcm[first * CHUNK_BYTES : last * CHUNK_BYTES]


def make_utterances(count: int, seed: int, stream: int = 0) -> list[Utterance]:
    """``count`` utterances chosen by ``seed``; ``stream`` gives each talker its own sentences and voices."""
    rng = random.Random(seed * 1000 + stream)
    order = list(SENTENCES)
    rng.shuffle(order)
    out: list[Utterance] = []
    for i in range(count):
        text = order[i % len(order)]
        voice, rate, pitch = rng.choice(VOICES), rng.choice(RATES), rng.choice(PITCHES)
        pcm = trim_to_voiced(speak_pcm(text, voice=voice, rate=rate, pitch=pitch, sample_rate=SAMPLE_RATE))
        if not pcm:
            raise RuntimeError("espeak-ng produced no voiced audio")
        out.append(Utterance(text, voice, rate, pitch, pcm))
    return out


def silence_chunk() -> bytes:
    return b"\x00" * CHUNK_BYTES
