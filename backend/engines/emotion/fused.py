"""The emotion detector: the words' emotion (embeddings) fused with the voice's (prosody).

``detect`` blocks (one sentence embedding, a few ms of numpy for the audio); the pipeline calls it in a
worker thread. The fused scores are ``text_weight * text + (1 - text_weight) * voice``; without usable audio
(none, shorter than MIN_AUDIO_SECONDS, or no voiced speech in it) the result is the text estimate alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from backend.config import EmotionSettings
from backend.core.devices import resolve_device
from backend.core.exceptions import ModelError, ModelLoadError
from backend.engines.emotion.prosody import extract_prosody, voice_estimate
from backend.engines.emotion.text_embedding import CachedEmbedder, load_text_emotion
from backend.engines.protocols import EMOTIONS, EmotionEstimate, EmotionResult, FloatAudio, ProsodyFeatures
from backend.engines.registry import engine_options

logger = logging.getLogger(__name__)

MIN_AUDIO_SECONDS = 0.3
TextClassifier = Callable[[str], EmotionEstimate]


def fuse(text: EmotionEstimate, voice: EmotionEstimate | None, text_weight: float) -> dict[str, float]:
    """Weighted mean of the two score sets, renormalised to sum to 1; the text alone when voice is None."""
    if voice is None:
        combined = {e: text.scores.get(e, 0.0) for e in EMOTIONS}
    else:
        w = min(max(text_weight, 0.0), 1.0)
        combined = {e: w * text.scores.get(e, 0.0) + (1.0 - w) * voice.scores.get(e, 0.0) for e in EMOTIONS}
    total = sum(combined.values())
    if total <= 0.0:
        return {e: 1.0 / len(EMOTIONS) for e in EMOTIONS}
    return {e: v / total for e, v in combined.items()}


class FusedEmotionDetector:
    """Implements EmotionDetector, and TextEmbedder when given the text model's ``embedder`` (the sentence
    model is loaded once and serves memory retrieval too; its cache makes the second embedding of a turn's
    message free).

    ``classify_text`` is the text model, e.g. ``EmbeddingEmotionClassifier.classify``.
    """

    def __init__(
        self, classify_text: TextClassifier, *, text_weight: float = 0.75, embedder: CachedEmbedder | None = None
    ) -> None:
        self._classify_text = classify_text
        self.text_weight = text_weight
        self._embedder = embedder

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Sentence embeddings (L2-normalised rows) from the text emotion model's MiniLM. Blocking."""
        if self._embedder is None:
            raise ModelError("this emotion detector was built without an embedder")
        return self._embedder.embed(texts)

    def detect(self, text: str, audio: FloatAudio | None = None) -> EmotionResult:
        """Fuse the emotion of ``text`` with the prosody of ``audio`` (16 kHz mono float32). Blocking."""
        text_est = self._classify_text(text)
        prosody: ProsodyFeatures | None = None
        voice_est: EmotionEstimate | None = None
        if audio is not None and len(audio) >= MIN_AUDIO_SECONDS * 16_000:
            prosody = extract_prosody(audio)
            if prosody.voiced_ratio > 0.0:
                voice_est = voice_estimate(prosody)
        scores = fuse(text_est, voice_est, self.text_weight)
        label = max(scores, key=lambda e: scores[e])
        return EmotionResult(
            label=label,
            confidence=scores[label],
            scores=scores,
            text=text_est,
            voice=voice_est,
            prosody=prosody,
        )

    def warmup(self) -> None:
        """Run one detection with text and a second of synthetic voiced audio. Blocking."""
        t = np.arange(16_000, dtype=np.float32) / 16_000
        tone = (0.3 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
        self.detect("I had a long day at work today.", tone)


class Options(BaseModel):
    """The fused detector's own settings (``emotion.*`` keys besides backend, device, min_confidence)."""

    model_config = ConfigDict(extra="forbid")
    embedding_model: str = "embedded:all-MiniLM-L6-v2"
    examples_path: Path = Path("config/emotion_examples.yaml")
    # More labelled sentences: the first user turns of the mentor dataset (written by
    # scripts/training/build_mentor_dataset.py); none to use the examples file alone.
    extra_examples_path: Path | None = Path("data/mentor/emotion_examples.yaml")
    cache_dir: Path | None = Path("models/cache/emotion")  # the examples' embeddings, computed once
    text_weight: float = Field(0.75, ge=0.0, le=1.0)  # the rest goes to the voice (prosody)


def load(settings: EmotionSettings) -> FusedEmotionDetector:
    """Load the text emotion model on ``emotion.device``. Blocking.

    Raises ModelLoadError naming the embedding model or the examples file when either cannot be loaded.
    """
    options = engine_options("emotion", "fused", settings, Options)
    start = time.perf_counter()
    try:
        classifier = load_text_emotion(
            options.embedding_model,
            options.examples_path,
            resolve_device(settings.device),
            extra_examples_path=options.extra_examples_path,
            cache_dir=options.cache_dir,
        )
    except Exception as exc:
        raise ModelLoadError(
            f"emotion model '{options.embedding_model}' (examples {options.examples_path}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    service = FusedEmotionDetector(classifier.classify, text_weight=options.text_weight, embedder=classifier.embedder)
    logger.info("emotion detector ready", extra={"seconds": round(time.perf_counter() - start, 3)})
    return service
