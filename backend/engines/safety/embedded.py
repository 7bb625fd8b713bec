"""The default safety engine (``safety.backend: embedded``): the negation-aware patterns, then the sentence
embeddings the server already loads (MiniLM) against the team's labelled examples.

A message (and each of its clauses) is compared with every crisis example and every hard negative of
``config/safety_examples.yaml``. A clause is flagged when its nearest crisis example is close
(``min_similarity``) and closer than its nearest hard negative by ``margin``; the category and level are that
example's (an urgency cue in the message raises the level). The patterns decide first: they read negation and
figurative speech, which embeddings do not. Offline, embedded, a few milliseconds a message.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from backend.config import SafetySettings, resolve_path
from backend.core.exceptions import ConfigError
from backend.engines.embedding_cache import cached_embeddings
from backend.engines.protocols import (
    NOT_FLAGGED,
    SAFETY_CATEGORIES,
    SafetyCategory,
    SafetyLevel,
    SafetyVerdict,
    TextEmbedder,
)
from backend.engines.registry import engine_options
from backend.engines.safety import patterns

logger = logging.getLogger(__name__)
_FINGERPRINT = "a sentence that tells one embedding model from another"
MIN_PLAIN_WORDS = 5  # "Take a breath." is close to many things; without a crisis word, shorter is not compared
_WORDS = re.compile(r"[a-z']+")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    examples_path: Path = Path("config/safety_examples.yaml")
    cache_dir: Path | None = Path("models/cache/safety")  # the examples' embeddings, computed once per model
    # A clause's closeness to crisis is its mean cosine (MiniLM) to its k nearest crisis examples; to hard
    # negatives, the same over the negatives. Flagged when the first exceeds the second by margin and is at least
    # risk_similarity for a clause with a crisis word (patterns.risk_words), min_similarity for any clause.
    # Chosen on the development examples (config/safety_examples.yaml), each left out in turn: the highest
    # recall of their crisis sentences (80%, with the patterns) at no more than 5% of their hard negatives.
    k: int = Field(3, ge=1)
    risk_similarity: float = Field(0.44, ge=0.0, le=1.0)
    min_similarity: float = Field(0.50, ge=0.0, le=1.0)
    margin: float = Field(0.09, ge=-1.0, le=1.0)


@dataclass(frozen=True)
class Example:
    text: str
    category: SafetyCategory | None  # None: a hard negative
    level: SafetyLevel | None


def load_examples(path: Path) -> list[Example]:
    """The labelled examples: ``crisis: {category: {level: [text]}}`` and ``not_crisis: {group: [text]}``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"safety examples {path} could not be read: {exc}") from exc
    examples: list[Example] = []
    for category, levels in (data.get("crisis") or {}).items():
        if category not in SAFETY_CATEGORIES:
            raise ConfigError(f"safety examples: unknown category {category!r}")
        for level, texts in (levels or {}).items():
            if level not in ("concern", "urgent"):
                raise ConfigError(f"safety examples: unknown level {level!r} under {category}")
            examples += [Example(str(t), category, level) for t in texts or []]
    for texts in (data.get("not_crisis") or {}).values():
        examples += [Example(str(t), None, None) for t in texts or []]
    if not any(e.category for e in examples) or not any(e.category is None for e in examples):
        raise ConfigError(f"safety examples {path} need crisis examples and hard negatives")
    return examples


class PatternSafety:
    """The patterns alone (``safety.backend: patterns``): no model, for deployments without embeddings."""

    def warmup(self) -> None:
        patterns.check("warming up the safety check")

    def check_message(self, text: str) -> SafetyVerdict:
        return patterns.check(text)

    def check_reply(self, text: str) -> str | None:
        return patterns.check_reply(text)

    def unfinished_risk(self, text: str) -> bool:
        return patterns.unfinished_risk(text)


class EmbeddedSafety(PatternSafety):
    """Patterns first, then nearest labelled examples by sentence embedding."""

    def __init__(self, embedder: TextEmbedder | None, examples: Sequence[Example], options: Options) -> None:
        self.embedder = embedder
        self.options = options
        self.examples = list(examples)
        self._matrix: NDArray[np.float32] | None = None
        self._is_crisis = np.array([e.category is not None for e in self.examples])
        self._crisis_rows = np.flatnonzero(self._is_crisis)

    def warmup(self) -> None:
        if self.embedder is not None and self._matrix is None:
            embed = self.embedder.embed
            # The embedder names no model: a sentence's embedding tells one model from another for the cache.
            probe = np.round(embed([_FINGERPRINT])[0], 3).astype(np.float32).tobytes()
            model = hashlib.sha256(probe).hexdigest()[:16]
            texts = [patterns.normalize(e.text) for e in self.examples]
            self._matrix = cached_embeddings(embed, model, texts, self.options.cache_dir)
            self.check_message("warming up the safety check")

    def check_message(self, text: str) -> SafetyVerdict:
        normalized = patterns.normalize(text)
        verdict = patterns.check_normalized(normalized)
        if verdict.flagged or self.embedder is None or not normalized:
            return verdict
        if self._matrix is None:
            self.warmup()
        assert self._matrix is not None
        parts = list(dict.fromkeys([normalized, *patterns.clauses(normalized)]))
        sims = self.embedder.embed(parts) @ self._matrix.T  # (parts, examples)
        best: tuple[float, int] | None = None
        k = self.options.k
        for part, row in zip(parts, sims, strict=True):
            pos = row[self._crisis_rows]
            neg = row[~self._is_crisis]
            top = np.argsort(pos)[-k:]
            score = float(pos[top].mean())
            against = float(np.sort(neg)[-k:].mean())
            if patterns.risk_words(part):
                floor = self.options.risk_similarity
            elif len(_WORDS.findall(part)) >= MIN_PLAIN_WORDS:  # a short plain clause is too little to compare
                floor = self.options.min_similarity
            else:
                continue
            close = score >= floor and score - against >= self.options.margin
            if close and (best is None or score > best[0]):
                best = (score, int(self._crisis_rows[top[-1]]))
        if best is None:
            return NOT_FLAGGED
        example = self.examples[best[1]]
        assert example.category is not None and example.level is not None
        level = example.level
        if level == "concern" and patterns.urgent_cue(example.category, normalized):
            level = "urgent"
        return SafetyVerdict(True, example.category, level, f"similarity:{best[0]:.2f}")


def load(section: SafetySettings, embedder: TextEmbedder | None) -> EmbeddedSafety:
    options = engine_options("safety", "embedded", section, Options)
    if embedder is None:
        logger.warning("no sentence embeddings loaded: the safety check uses its patterns alone")
    return EmbeddedSafety(embedder, load_examples(resolve_path(options.examples_path)), options)


def load_patterns(section: SafetySettings, embedder: TextEmbedder | None) -> PatternSafety:
    engine_options("safety", "patterns", section, _NoOptions)
    return PatternSafety()


class _NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
