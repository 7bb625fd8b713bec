"""Scoring maths of the embedding emotion classifier, with a bag-of-words hashing embedder (no weights)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from backend.config import resolve_path
from backend.engines.embedding_cache import cached_embeddings
from backend.engines.emotion.text_embedding import (
    EmbeddingEmotionClassifier,
    load_examples,
    merge_examples,
    ordered_texts,
)
from backend.engines.protocols import EMOTIONS

pytestmark = pytest.mark.fast

DIM = 256


def hash_embed(texts: list[str]) -> np.ndarray:
    """One dimension per hashed lower-case word: texts sharing words are similar."""
    out = np.zeros((len(texts), DIM))
    for i, text in enumerate(texts):
        for word in re.findall(r"[a-z']+", text.lower()):
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
    return out


WORDS = {
    "neutral": "table schedule office bus",
    "happy": "joy great wonderful excited",
    "sad": "lonely cry grief empty",
    "anxious": "worry nervous panic scared",
    "angry": "furious mad hate fed",
    "surprised": "wow whoa unexpected really",
}


def toy_examples() -> dict[str, list[str]]:
    """Four sentences per label, each built from that label's keywords plus filler."""
    out: dict[str, list[str]] = {}
    for label, words in WORDS.items():
        w = words.split()
        out[label] = [f"i {w[i]} {w[(i + 1) % 4]} today" for i in range(4)]
    return out


@pytest.fixture(scope="module")
def classifier() -> EmbeddingEmotionClassifier:
    return EmbeddingEmotionClassifier(hash_embed, toy_examples())


def test_scores_cover_all_labels_and_sum_to_one(classifier: EmbeddingEmotionClassifier) -> None:
    """Every emotion gets a score, scores are probabilities summing to 1, and the label is the argmax."""
    est = classifier.classify("i feel so nervous and scared")
    assert set(est.scores) == set(EMOTIONS)
    assert sum(est.scores.values()) == pytest.approx(1.0)
    assert all(0.0 <= v <= 1.0 for v in est.scores.values())
    assert est.label == max(est.scores, key=lambda e: est.scores[e])
    assert est.confidence == pytest.approx(est.scores[est.label])


@pytest.mark.parametrize("label", EMOTIONS)
def test_keywords_pick_their_label(classifier: EmbeddingEmotionClassifier, label: str) -> None:
    """A text made of one label's keywords is classified as that label."""
    w = WORDS[label].split()
    assert classifier.classify(f"{w[0]} {w[2]}").label == label


@pytest.mark.parametrize("text", ["", "   ", "?!", "4", "a"])
def test_empty_or_letterless_text_is_low_confidence_neutral(classifier: EmbeddingEmotionClassifier, text: str) -> None:
    """Empty or near-empty text is neutral with low confidence, and the embedder is not needed for it."""
    est = classifier.classify(text)
    assert est.label == "neutral"
    assert est.confidence < 0.5
    assert sum(est.scores.values()) == pytest.approx(1.0)


def test_temperature_is_calibrated_on_examples(classifier: EmbeddingEmotionClassifier) -> None:
    """Calibration picks a finite temperature and leave-one-out accuracy on separable examples is high."""
    assert 0.0 < classifier.temperature <= 0.2
    assert classifier.loo_accuracy >= 0.8


def test_valence_shifts_happy_against_sad() -> None:
    """A positive valence raises happy and lowers sad for the same text; negative does the opposite."""
    ex = toy_examples()
    text = "today i feel something"
    up = EmbeddingEmotionClassifier(hash_embed, ex, valence=lambda _: 1.0).classify(text)
    down = EmbeddingEmotionClassifier(hash_embed, ex, valence=lambda _: -1.0).classify(text)
    assert up.scores["happy"] > down.scores["happy"]
    assert up.scores["sad"] < down.scores["sad"]


def test_missing_label_is_rejected() -> None:
    """Examples must cover every emotion with at least two sentences."""
    ex = toy_examples()
    ex["surprised"] = ["wow"]
    with pytest.raises(ValueError, match="surprised"):
        EmbeddingEmotionClassifier(hash_embed, ex)


def test_examples_file_is_complete_and_disjoint() -> None:
    """The shipped examples have >= 30 sentences and the holdout >= 8 per emotion, with no overlap."""
    examples, holdout = load_examples(resolve_path("config/emotion_examples.yaml"))
    for e in EMOTIONS:
        assert len(examples[e]) >= 30, e
        assert len(holdout[e]) >= 8, e
    train = {s.lower() for v in examples.values() for s in v}
    assert not train & {s.lower() for v in holdout.values() for s in v}
    assert len(train) == sum(len(v) for v in examples.values())


def test_dataset_examples_extend_the_file_without_touching_the_holdout() -> None:
    """The mentor dataset's first user turns (data/mentor/emotion_examples.yaml, rebuilt with the dataset) add
    sentences to every label; none is a held-out sentence of the examples file."""
    from backend.engines.emotion.fused import Options

    examples, holdout = load_examples(resolve_path("config/emotion_examples.yaml"))
    extra_path = Options().extra_examples_path
    assert extra_path is not None
    extra, _ = load_examples(resolve_path(extra_path))
    merged = merge_examples(examples, extra)
    for e in EMOTIONS:
        assert len(extra[e]) >= 60, e
        assert len(merged[e]) == len(set(merged[e])) >= len(examples[e]) + 40
    held = {s.lower() for v in holdout.values() for s in v}
    assert not held & {s.lower() for v in extra.values() for s in v}


def test_example_embeddings_are_cached_by_their_texts(tmp_path: Path) -> None:
    """The first load embeds the examples and writes them; the next load of the same texts reads them back;
    other texts (an edited dataset) are embedded again; an unreadable cache file is recomputed."""
    calls: list[int] = []

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.asarray(hash_embed(texts))

    texts = ordered_texts(toy_examples())
    first = cached_embeddings(counting, "toy", texts, tmp_path)
    again = cached_embeddings(counting, "toy", texts, tmp_path)
    assert calls == [len(texts)] and np.array_equal(first, again)
    cached_embeddings(counting, "toy", [*texts, "a new example"], tmp_path)
    assert calls == [len(texts), len(texts) + 1]
    for path in tmp_path.glob("examples-*.npy"):
        path.write_bytes(b"not numpy")
    assert np.array_equal(cached_embeddings(counting, "toy", texts, tmp_path), first)
    assert len(calls) == 3
    assert cached_embeddings(counting, "toy", texts, None).shape == first.shape  # no cache at all


def test_precomputed_example_embeddings_must_match_the_examples() -> None:
    ex = toy_examples()
    vectors = np.asarray(hash_embed(ordered_texts(ex)))
    same = EmbeddingEmotionClassifier(hash_embed, ex, example_embeddings=vectors)
    assert (
        same.classify("today i feel something").label
        == EmbeddingEmotionClassifier(hash_embed, ex).classify("today i feel something").label
    )
    with pytest.raises(ValueError, match="example embeddings"):
        EmbeddingEmotionClassifier(hash_embed, ex, example_embeddings=vectors[:-1])
