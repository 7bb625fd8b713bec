"""Whisper tiny.en (embedded) transcribes espeak-ng speech accurately."""

from __future__ import annotations

import time

import numpy as np
import pytest

from backend.config import STTSettings
from backend.core.audio_utils import pcm16_to_float32
from backend.core.exceptions import ModelLoadError
from backend.engines.stt.whisper import WhisperSTT
from backend.engines.stt.whisper import load as load_stt
from scripts.common.espeak import espeak_available, speak_pcm
from scripts.common.wer import normalize_words, word_error_rate

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed"),
]

CASES = [
    ("I have been feeling really anxious about my job interview tomorrow.", "en-us", 160),
    ("Could you help me make a plan for the week ahead?", "en+f3", 150),
    ("Yesterday I finished my project and I feel proud of myself.", "en-us", 175),
    ("Sometimes I wonder whether I chose the right career.", "en+m3", 150),
]
# The word-error-rate grid: every sentence in every voice (48 clips, ~10 s on 2 CPU threads).
SENTENCES = [
    "I have been feeling really anxious about my job interview tomorrow.",
    "Could you help me make a plan for the week ahead?",
    "Yesterday I finished my project and I feel proud of myself.",
    "Sometimes I wonder whether I chose the right career.",
    "My manager gave me difficult feedback and I do not know how to respond.",
    "How can I stop worrying about things I cannot control?",
    "I keep putting off my studies until the last minute.",
    "My friend and I had an argument and I miss talking to her.",
    "What should I do first when everything feels urgent?",
    "I would like to build a habit of reading every evening.",
    "Thank you, this conversation helps me feel much calmer.",
    "Talking about it makes me feel a little better.",
]
VOICES = [("en-us", 160), ("en+f3", 150), ("en+m3", 150), ("en-gb", 165)]


@pytest.fixture(scope="module")
def stt() -> WhisperSTT:
    model = load_stt(STTSettings(device="cpu"))
    model.warmup()
    return model


@pytest.fixture(scope="module")
def transcripts(stt: WhisperSTT) -> list[tuple[str, str, str]]:
    """(reference, voice, hypothesis) for every sentence in every voice."""
    out = []
    for text in SENTENCES:
        for voice, rate in VOICES:
            audio = pcm16_to_float32(speak_pcm(text, voice=voice, rate=rate))
            result = stt.transcribe(audio)
            assert result.language == "en"
            assert result.audio_seconds == pytest.approx(len(audio) / 16000, abs=0.01)
            out.append((text, voice, result.text))
    return out


def _corpus_wer(rows: list[tuple[str, float]]) -> float:
    """Word-weighted WER of (reference, WER) rows: all errors over all reference words."""
    words = [len(normalize_words(ref)) for ref, _ in rows]
    return sum(rate * n for (_, rate), n in zip(rows, words, strict=True)) / sum(words)


def test_espeak_sentences_word_error_rate(transcripts: list[tuple[str, str, str]]) -> None:
    """12 sentences x 4 espeak voices (48 clips): speech is understood, with room for the CPU's kernels.

    Bounds, each with margin over the worst measured: corpus WER <= 0.12; every voice's WER <= 0.25 (no voice
    is lost); every sentence's mean WER over the four voices <= 0.35 (no sentence is lost); at most 4 of the
    48 clips above 0.35, and none above 0.9 (a hard word pair, or one voice mangling one sentence, is allowed;
    a garbled clip is not).

    Measured on an Intel Xeon (AVX-512, 2 threads), int8 (the default) and float32, with ctranslate2's MKL
    kernels and its DNNL ones (CT2_USE_MKL=0, what it uses on AMD CPUs), ISA forced to AVX/AVX2/AVX-512, and
    speaking rates -15/+15 as well: corpus WER 0.041-0.053 (int8 0.047-0.053, float32 0.041-0.047), worst voice
    0.11 (en+f3), worst sentence mean 0.205, at most 2 clips above 0.35, worst clip 0.64 (int8; float32 0.45):
    en+f3 "Yesterday I finished my project..." heard as "Yes to me I finished my pronget and I feel your prong
    on myself". At the test's rates every other clip is <= 0.27: en+f3 "week ahead" is heard as "weaker head"
    (0.27 here; 0.45 on an AMD EPYC, which broke a former per-sentence limit of 0.35).
    """
    rows = [(ref, voice, word_error_rate(ref, hyp), hyp) for ref, voice, hyp in transcripts]
    for ref, voice, rate, hyp in sorted(rows, key=lambda r: -r[2])[:8]:
        print(f"WER {rate:.2f} {voice:6s} {ref!r} -> {hyp!r}")
    corpus = _corpus_wer([(ref, rate) for ref, _, rate, _ in rows])
    print(f"corpus WER {corpus:.3f} over {len(rows)} clips")
    assert len(rows) == len(SENTENCES) * len(VOICES)
    assert corpus <= 0.12, rows
    for voice, _ in VOICES:
        assert _corpus_wer([(ref, rate) for ref, v, rate, _ in rows if v == voice]) <= 0.25, (voice, rows)
    for sentence in SENTENCES:
        rates = [rate for ref, _, rate, _ in rows if ref == sentence]
        assert sum(rates) / len(rates) <= 0.35, (sentence, rates)
    assert sum(rate > 0.35 for _, _, rate, _ in rows) <= 4, rows
    assert max(rate for _, _, rate, _ in rows) <= 0.9, rows


def test_short_window_serves_turns_as_accurately_as_the_stock_window(
    stt: WhisperSTT, transcripts: list[tuple[str, str, str]]
) -> None:
    """Turns under window_s are transcribed in the short encoder window, with a WER no worse than the stock
    30 s window's (plus 0.05 of slack) over the same clips, and in less time."""
    assert stt.windowed >= len(CASES)
    stock = load_stt(STTSettings(device="cpu", window_s=30.0))
    short_s = stock_s = 0.0
    short_wer = stock_wer = 0.0
    for text, voice, rate in CASES:
        audio = pcm16_to_float32(speak_pcm(text, voice=voice, rate=rate))
        started = time.perf_counter()
        short_wer += word_error_rate(text, stt.transcribe(audio).text)
        short_s += time.perf_counter() - started
        started = time.perf_counter()
        stock_wer += word_error_rate(text, stock.transcribe(audio).text)
        stock_s += time.perf_counter() - started
    assert stock.windowed == 0
    assert short_wer <= stock_wer + 0.05 * len(CASES), (short_wer, stock_wer)
    assert short_s < stock_s, (short_s, stock_s)


def test_a_looping_short_window_falls_back_to_the_stock_window() -> None:
    """A window too short for Whisper makes it repeat itself; the guard notices and the stock path answers."""
    tight = load_stt(STTSettings(device="cpu", window_s=1.0, window_tail_s=0.3))
    for voice in ("en-gb", "en+f3"):
        for text in ("Hello.", "I'm tired.", "What should I do first?"):
            heard = tight.transcribe(pcm16_to_float32(speak_pcm(text, voice=voice))).text
            assert len(heard.split()) <= len(text.split()) + 2, (text, heard)


def test_empty_and_silent_audio(stt: WhisperSTT) -> None:
    """Empty audio returns an empty transcript without calling the model; silence returns few or no words."""
    assert stt.transcribe(np.zeros(0, dtype=np.float32)).text == ""
    assert len(stt.transcribe(np.zeros(16000, dtype=np.float32)).text.split()) <= 2


def test_three_second_clip_is_fast(stt: WhisperSTT) -> None:
    """A ~3 s clip transcribes in under 3 s on 2 CPU threads (real-time or better)."""
    audio = pcm16_to_float32(speak_pcm("Please tell me how to stay calm before a big presentation."))
    started = time.perf_counter()
    stt.transcribe(audio)
    assert time.perf_counter() - started < 3.0


def test_missing_model_raises_model_load_error(tmp_path: object) -> None:
    """An unknown embedded name or a missing local model fails with ModelLoadError naming the model."""
    with pytest.raises(ModelLoadError, match="speech-to-text model 'embedded:huge'"):
        load_stt(STTSettings(model="embedded:huge", device="cpu"))
    with pytest.raises(ModelLoadError, match="speech-to-text model 'no-such-model-xyz' failed to load"):
        load_stt(STTSettings(model="no-such-model-xyz", device="cpu"))
