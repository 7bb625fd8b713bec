"""The real emotion detector: MiniLM embeddings on the held-out sentences, and prosody of espeak-ng speech."""

from __future__ import annotations

import logging
import time

import pytest

from backend.config import REPO_ROOT, EmotionSettings, resolve_path
from backend.core.audio_utils import pcm16_to_float32
from backend.engines.emotion.fused import FusedEmotionDetector
from backend.engines.emotion.fused import Options as FusedOptions
from backend.engines.emotion.fused import load as load_emotion
from backend.engines.emotion.prosody import extract_prosody
from backend.engines.emotion.text_embedding import load_examples
from scripts.common.espeak import espeak_available, speak_pcm

pytestmark = pytest.mark.real

logger = logging.getLogger(__name__)
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
SENTENCE = "I really need to talk to you about what happened at work today, it was a lot."


@pytest.fixture(scope="module")
def service() -> FusedEmotionDetector:
    start = time.perf_counter()
    svc = load_emotion(EmotionSettings(device="cpu"))
    logger.info("emotion load", extra={"seconds": round(time.perf_counter() - start, 2)})
    return svc


def test_holdout_accuracy_at_least_70_percent(service: FusedEmotionDetector) -> None:
    """The real classifier labels >= 70% of the held-out sentences (never used for scoring) correctly."""
    _, holdout = load_examples(resolve_path(FusedOptions().examples_path))
    cases = [(label, s) for label, sentences in holdout.items() for s in sentences]
    wrong = [(label, s, service.detect(s).label) for label, s in cases]
    wrong = [w for w in wrong if w[0] != w[2]]
    accuracy = 1 - len(wrong) / len(cases)
    print(f"holdout accuracy {accuracy:.3f} ({len(cases) - len(wrong)}/{len(cases)}); misses: {wrong}")
    assert accuracy >= 0.7


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("My brother passed away and I can't stop crying.", "sad"),
        ("I just got promoted, this is the best news ever!", "happy"),
        ("I'm so angry, my landlord kept my whole deposit for no reason.", "angry"),
        ("I'm terrified about the job interview tomorrow, I can't sleep.", "anxious"),
        ("I took the train to work and had a meeting at ten.", "neutral"),
    ],
)
def test_clear_sentences_get_their_label(service: FusedEmotionDetector, text: str, label: str) -> None:
    """An unambiguous sentence (not in the examples file) gets its emotion from the text alone."""
    result = service.detect(text)
    assert result.label == label, result.scores


@needs_espeak
def test_aroused_espeak_speech_has_higher_arousal() -> None:
    """espeak-ng at -a 200 -s 220 -p 80 scores higher arousal than at -a 60 -s 120 -p 30."""
    aroused = pcm16_to_float32(speak_pcm(SENTENCE, amplitude=200, rate=220, pitch=80))
    calm = pcm16_to_float32(speak_pcm(SENTENCE, amplitude=60, rate=120, pitch=30))
    hi, lo = extract_prosody(aroused), extract_prosody(calm)
    print(f"arousal aroused {hi.arousal:.2f} calm {lo.arousal:.2f}")
    assert hi.arousal > lo.arousal + 0.2
    assert hi.speaking_rate > lo.speaking_rate
    assert hi.pitch_hz > lo.pitch_hz


@needs_espeak
def test_detect_with_speech_fuses_voice(service: FusedEmotionDetector) -> None:
    """With real speech the result carries text, voice and prosody estimates and a text-led label."""
    audio = pcm16_to_float32(speak_pcm("I'm so happy, I passed my exam!", amplitude=180, rate=200, pitch=70))
    result = service.detect("I'm so happy, I passed my exam!", audio)
    assert result.voice is not None and result.prosody is not None and result.text is not None
    assert result.prosody.voiced_ratio > 0.3
    assert result.label == "happy"
    assert sum(result.scores.values()) == pytest.approx(1.0)


def test_fresh_sentences_are_read_better_with_the_dataset_examples(service: FusedEmotionDetector) -> None:
    """On the frozen test sentences (data/mentor/test.jsonl, in no examples file), the default detector (examples
    file + the mentor dataset's first user turns) gets more labels right than the examples file alone, and at
    least 55% (measured: 65% vs 48%)."""
    import json

    rows = [json.loads(line) for line in (REPO_ROOT / "data/mentor/test.jsonl").read_text().splitlines() if line]
    file_only = load_emotion(EmotionSettings.model_validate({"device": "cpu", "extra_examples_path": None}))

    def accuracy(detector: FusedEmotionDetector) -> float:
        return float(sum(detector.detect(r["text"]).label == r["emotion"] for r in rows)) / len(rows)

    with_dataset, alone = accuracy(service), accuracy(file_only)
    print(f"fresh sentences: {with_dataset:.0%} with the dataset examples, {alone:.0%} with the file alone")
    assert with_dataset >= 0.55 and with_dataset > alone
