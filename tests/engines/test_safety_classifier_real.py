"""The built safety classifier (models/cache/safety/classifier.npz, made by scripts/training/train_safety.py) with
the real MiniLM: it is current for the example files, the engine uses it, and it reads a few plain sentences right.
Skipped when the weights were not built (scripts/setup.sh builds them)."""

from __future__ import annotations

import pytest

from backend.config import Settings, resolve_path
from backend.engines import registry
from backend.engines.protocols import TextEmbedder
from backend.engines.registry import engine_options
from backend.engines.safety import patterns
from backend.engines.safety.embedded import EmbeddedSafety, Options, load_classifier

pytestmark = pytest.mark.real


def test_built_classifier_flags_crisis_and_leaves_figurative_speech() -> None:
    settings = Settings()
    options = engine_options("safety", "embedded", settings.safety, Options)
    if options.classifier_path is None or not resolve_path(options.classifier_path).is_file():
        pytest.skip("the safety classifier is not built (python -m scripts.training.train_safety)")
    assert load_classifier(options) is not None, "the built weights are stale: rebuild them"
    emotion = registry.EMOTION.loader(settings.emotion)()
    assert isinstance(emotion, TextEmbedder)
    checker = registry.safety_loader(settings.safety, emotion)()
    checker.warmup()
    assert isinstance(checker, EmbeddedSafety) and checker.head is not None
    # Development examples the patterns leave to the embeddings: the two stages together find most; the
    # classifier (its threshold is high: few held-out hard negatives may pass) a good share of them.
    left = [e for e in checker.examples if e.category and not patterns.check(e.text).flagged][:40]
    verdicts = [checker.check_message(e.text) for e in left]
    assert sum(v.flagged for v in verdicts) >= 0.8 * len(left)
    assert sum(v.source.startswith("classifier:") for v in verdicts) >= 0.25 * len(left)
    assert sum(v.category == e.category for v, e in zip(verdicts, left, strict=True)) >= 0.8 * len(left)
    for text in ("this commute is killing me", "I'm dying to see it", "my grandmother passed away last month"):
        assert not checker.check_message(text).flagged, text
