"""Benchmark utterances: seeded mentor-style sentences spoken by espeak-ng, trimmed to their voiced part.

Used by scripts/bench/latency.py. Blocking (espeak-ng subprocess per utterance).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from scripts.common.espeak import speak_pcm

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
    pause_ms: int = 0  # a thinking pause inside the utterance (0: none)

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / SAMPLE_RATE

    def describe(self) -> dict[str, object]:
        return {
            "text": self.text,
            "voice": self.voice,
            "rate": self.rate,
            "pitch": self.pitch,
            "pause_ms": self.pause_ms,
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


# Two clauses with a thinking pause between them: the person has not finished at the pause.
PAUSED: tuple[tuple[str, str], ...] = (
    ("When I get home from work", "I just feel too tired to do anything"),
    ("I wanted to call my sister", "but I was afraid she would be upset"),
    ("The thing is", "I never really liked this job"),
    ("Every time I try to study", "my mind starts to wander"),
    ("I told my manager", "that I need more time for the report"),
    ("Sometimes at night", "I cannot stop thinking about it"),
)
PAUSES_MS: tuple[int, ...] = (350, 400, 450)


def make_paused_utterances(count: int, seed: int) -> list[Utterance]:
    """``count`` two-clause utterances with a 350-450 ms pause inside (several voices, rates and pauses)."""
    rng = random.Random(seed * 7919)
    out: list[Utterance] = []
    for i in range(count):
        first, second = PAUSED[i % len(PAUSED)]
        pause_ms = PAUSES_MS[i % len(PAUSES_MS)]
        voice, rate, pitch = VOICES[i % len(VOICES)], rng.choice(RATES), rng.choice(PITCHES)
        parts = [
            trim_to_voiced(speak_pcm(text, voice=voice, rate=rate, pitch=pitch, sample_rate=SAMPLE_RATE))
            for text in (first, second)
        ]
        if not all(parts):
            raise RuntimeError("espeak-ng produced no voiced audio")
        gap = silence_chunk() * (pause_ms // CHUNK_MS)
        out.append(Utterance(f"{first} ... {second}", voice, rate, pitch, parts[0] + gap + parts[1], pause_ms))
    return out


def silence_chunk() -> bytes:
    return b"\x00" * CHUNK_BYTES
