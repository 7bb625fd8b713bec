"""The default safety engine (``safety.backend: embedded``): the negation-aware patterns, then the sentence
embeddings the server already loads (MiniLM) against the team's labelled examples.

A message (and each of its clauses) is compared with every crisis example and every hard negative of
``config/safety_examples.yaml``. A clause is flagged when its nearest crisis example is close
(``min_similarity``) and closer than its nearest hard negative by ``margin``; the category and level are that
example's (an urgency cue in the message raises the level). The patterns decide first: they read negation and
figurative speech, which embeddings do not. Offline, embedded, a few milliseconds a message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

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
from backend.engines.safety.classifier import SafetyHead, embedder_id, load_head, training_key

logger = logging.getLogger(__name__)
MIN_PLAIN_WORDS = 5  # "Take a breath." is close to many things; without a crisis word, shorter is not compared
_WORDS = re.compile(r"[a-z']+")


DEFAULT_EXAMPLES = (Path("config/safety_examples.yaml"), Path("config/safety_examples_*.yaml"))


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # One file or a list; an entry with a wildcard (*, ?, [) is a glob that may match nothing, a plain path must
    # exist. The default: the main file and any further files written beside it (config/safety_examples_a.yaml).
    examples_path: list[Path] = Field(default_factory=lambda: list(DEFAULT_EXAMPLES))
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
    # The trained classifier (backend/engines/safety/classifier.py; built by scripts/training/train_safety.py).
    # both: the classifier, then the nearest examples for what it leaves (the default: on the frozen test set it
    # found more than either alone); classifier: it alone after the patterns; knn: the nearest examples alone.
    # Without current weights (missing, or built from other examples) the nearest examples alone, logged.
    detector: Literal["both", "classifier", "knn"] = "both"
    classifier_path: Path | None = Path("models/cache/safety/classifier.npz")

    @field_validator("examples_path", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str | Path) else value


@dataclass(frozen=True)
class Example:
    text: str
    category: SafetyCategory | None  # None: a hard negative
    level: SafetyLevel | None


def example_files(paths: Path | Sequence[Path]) -> list[Path]:
    """The example files named by ``paths`` (resolved against the repository): a plain path must exist, a glob
    pattern adds the files it matches (sorted; none is fine). Each file once, in order."""
    files: list[Path] = []
    for entry in [paths] if isinstance(paths, Path) else paths:
        path = resolve_path(entry)
        if any(ch in path.name for ch in "*?["):
            files += sorted(p for p in path.parent.glob(path.name) if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"safety examples {path} not found")
    files = list(dict.fromkeys(files))
    if not files:
        raise ConfigError(f"safety examples: no file matches {paths}")
    return files


def load_examples(paths: Path | Sequence[Path]) -> list[Example]:
    """The labelled examples of every file of ``paths`` (``example_files``), each sentence once: a sentence
    labelled twice keeps its first label (a warning when the labels differ)."""
    seen: dict[str, Example] = {}
    examples: list[Example] = []
    for path in example_files(paths):
        for example in _read_examples(path):
            first = seen.setdefault(example.text, example)
            if first is example:
                examples.append(example)
            elif (first.category, first.level) != (example.category, example.level):
                logger.warning(
                    "safety example labelled twice; the first label is kept",
                    extra={"path": str(path), "first": f"{first.category}/{first.level}"},
                )
    if not any(e.category for e in examples) or not any(e.category is None for e in examples):
        raise ConfigError(f"safety examples {paths} need crisis examples and hard negatives")
    return examples


def _read_examples(path: Path) -> list[Example]:
    """One file: ``crisis: {category: {level: [text]}}`` and ``not_crisis: {group: [text]}``."""
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
    """Patterns first, then the sentence embeddings: the trained classifier when its weights are built and current
    (``detector``), else the nearest labelled examples."""

    def __init__(
        self,
        embedder: TextEmbedder | None,
        examples: Sequence[Example],
        options: Options,
        head: SafetyHead | None = None,
    ) -> None:
        self.embedder = embedder
        self.options = options
        self.examples = list(examples)
        self.head = head if options.detector != "knn" else None
        self._use_knn = options.detector != "classifier" or self.head is None
        self._matrix: NDArray[np.float32] | None = None
        self._ready = False
        self._is_crisis = np.array([e.category is not None for e in self.examples])
        self._crisis_rows = np.flatnonzero(self._is_crisis)

    def warmup(self) -> None:
        if self.embedder is not None and not self._ready:
            embed = self.embedder.embed
            model = embedder_id(embed)  # the embedder names no model: one sentence's embedding tells them apart
            if self.head is not None and self.head.embedder != model:
                logger.warning(
                    "safety classifier was trained on another embedding model; using the nearest examples instead"
                    " (rebuild it: python -m scripts.training.train_safety)"
                )
                self.head, self._use_knn = None, True
            if self._use_knn:
                texts = [patterns.normalize(e.text) for e in self.examples]
                self._matrix = cached_embeddings(embed, model, texts, self.options.cache_dir)
            self._ready = True
            self.check_message("warming up the safety check")

    def check_message(self, text: str) -> SafetyVerdict:
        normalized = patterns.normalize(text)
        verdict = patterns.check_normalized(normalized)
        if verdict.flagged or self.embedder is None or not normalized:
            return verdict
        if not self._ready:
            self.warmup()
        parts = [
            part
            for part in dict.fromkeys([normalized, *patterns.clauses(normalized)])
            # a short clause without a crisis word is too little to judge ("Take a breath.")
            if patterns.risk_words(part) or len(_WORDS.findall(part)) >= MIN_PLAIN_WORDS
        ]
        if not parts:
            return NOT_FLAGGED
        vectors = self.embedder.embed(parts)
        found = self._classify(vectors, normalized) if self.head is not None else None
        if found is None and self._use_knn:
            found = self._nearest(parts, vectors, normalized)
        return found or NOT_FLAGGED

    def _classify(self, vectors: NDArray[np.float32], normalized: str) -> SafetyVerdict | None:
        """The classifier's verdict: the part likeliest to be a crisis, if it reaches the threshold."""
        assert self.head is not None
        scores, categories, urgent = self.head.crisis(vectors)
        best = int(scores.argmax())
        if scores[best] < self.head.threshold:
            return None
        category = categories[best]
        level = self._level(category, "urgent" if urgent[best] >= 0.5 else "concern", normalized)
        return SafetyVerdict(True, category, level, f"classifier:{scores[best]:.2f}")

    def _nearest(self, parts: list[str], vectors: NDArray[np.float32], normalized: str) -> SafetyVerdict | None:
        """The nearest examples' verdict: a part close to crisis examples, closer than to the hard negatives."""
        assert self._matrix is not None
        sims = vectors @ self._matrix.T  # (parts, examples)
        best: tuple[float, int] | None = None
        k = self.options.k
        for part, row in zip(parts, sims, strict=True):
            pos = row[self._crisis_rows]
            neg = row[~self._is_crisis]
            top = np.argsort(pos)[-k:]
            score = float(pos[top].mean())
            against = float(np.sort(neg)[-k:].mean())
            floor = self.options.risk_similarity if patterns.risk_words(part) else self.options.min_similarity
            close = score >= floor and score - against >= self.options.margin
            if close and (best is None or score > best[0]):
                best = (score, int(self._crisis_rows[top[-1]]))
        if best is None:
            return None
        example = self.examples[best[1]]
        assert example.category is not None and example.level is not None
        level = self._level(example.category, example.level, normalized)
        return SafetyVerdict(True, example.category, level, f"similarity:{best[0]:.2f}")

    @staticmethod
    def _level(category: SafetyCategory, level: SafetyLevel, normalized: str) -> SafetyLevel:
        """``level``, raised to ``urgent`` by an urgency cue in the message."""
        return "urgent" if level == "concern" and patterns.urgent_cue(category, normalized) else level


def load_classifier(options: Options) -> SafetyHead | None:
    """The classifier's weights when they are built from the current examples; None (logged) otherwise."""
    if options.detector == "knn" or options.classifier_path is None:
        return None
    path = resolve_path(options.classifier_path)
    head = load_head(path)
    if head is None:
        logger.warning(
            "safety classifier weights not found; using the nearest examples instead"
            " (build them: python -m scripts.training.train_safety)",
            extra={"path": str(path)},
        )
        return None
    key = training_key(example_files(options.examples_path), head.settings)
    if key != head.key:
        logger.warning(
            "safety classifier was built from other examples or settings; using the nearest examples instead"
            " (rebuild it: python -m scripts.training.train_safety)",
            extra={"path": str(path)},
        )
        return None
    return head


def load(section: SafetySettings, embedder: TextEmbedder | None) -> EmbeddedSafety:
    options = engine_options("safety", "embedded", section, Options)
    if embedder is None:
        logger.warning("no sentence embeddings loaded: the safety check uses its patterns alone")
    head = load_classifier(options) if embedder is not None else None
    return EmbeddedSafety(embedder, load_examples(options.examples_path), options, head)


def load_patterns(section: SafetySettings, embedder: TextEmbedder | None) -> PatternSafety:
    engine_options("safety", "patterns", section, _NoOptions)
    return PatternSafety()


class _NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
