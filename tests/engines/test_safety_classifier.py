"""The safety check's trained classifier (backend/engines/safety/classifier.py, scripts/training/train_safety.py)
and the embedded engine's example files: several files, the weights' round trip, the threshold chosen on held-out
examples, the fallback to the nearest examples when the weights are missing or stale, and a real tiny training."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from backend.core.exceptions import ConfigError
from backend.engines.safety.classifier import LABELS, SafetyHead, load_head, save_head, training_key
from backend.engines.safety.embedded import EmbeddedSafety, Example, Options, load_classifier, load_examples
from scripts.training import train_safety

pytestmark = pytest.mark.fast

FILE_A = """
crisis:
  suicide:
    concern: ["I keep thinking about ending my life.", "nobody would miss me if I was gone"]
    urgent: ["I have the pills in my hand right now."]
not_crisis:
  figurative: ["This commute is killing me."]
"""
FILE_B = """
crisis:
  medical:
    urgent: ["My chest hurts and my arm is numb."]
  suicide:
    concern: ["I keep thinking about ending my life."]
not_crisis:
  grief: ["My grandmother passed away last month.", "nobody would miss me if I was gone"]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


class KeywordEmbedder:
    """Fake sentence embeddings: one axis per keyword group, so the test knows which way a sentence points."""

    GROUPS = (("pills", "ending", "life"), ("chest", "breathe"), ("commute", "grandmother", "weather"))

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        rows = np.full((len(texts), len(self.GROUPS) + 1), 0.05, dtype=np.float32)
        for i, text in enumerate(texts):
            for j, words in enumerate(self.GROUPS):
                rows[i, j] += sum(w in text.lower() for w in words)
        norms: NDArray[np.float32] = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / norms


def head_for(embedder: KeywordEmbedder, threshold: float = 0.6, key: str = "k") -> SafetyHead:
    """A hand-made head: axis 0 -> suicide (urgent when strong), axis 1 -> medical, axis 2 -> none."""
    dim = len(KeywordEmbedder.GROUPS) + 1
    w1 = np.eye(dim, dtype=np.float32)
    w2 = np.zeros((dim, len(LABELS) + 1), dtype=np.float32)
    w2[0, LABELS.index("suicide")] = 12.0
    w2[1, LABELS.index("medical")] = 12.0
    w2[2, LABELS.index("none")] = 12.0
    w2[3, LABELS.index("none")] = 2.0
    w2[0, len(LABELS)] = 4.0
    b2 = np.zeros(len(LABELS) + 1, dtype=np.float32)
    b2[len(LABELS)] = -3.0
    from backend.engines.safety.classifier import embedder_id

    return SafetyHead(w1, np.zeros(dim, np.float32), w2, b2, threshold, embedder_id(embedder.embed), key)


def test_examples_from_several_files_each_sentence_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = write(tmp_path, "ex.yaml", FILE_A)
    write(tmp_path, "ex_b.yaml", FILE_B)
    with caplog.at_level(logging.WARNING):
        examples = load_examples([a, tmp_path / "ex_*.yaml"])
    texts = [e.text for e in examples]
    assert len(texts) == len(set(texts)) == 6
    assert Example("nobody would miss me if I was gone", "suicide", "concern") in examples  # the first label
    assert "labelled twice" in caplog.text
    assert load_examples(a) == load_examples([a, tmp_path / "none_*.yaml"])  # a glob may match nothing


def test_a_named_example_file_must_exist(tmp_path: Path) -> None:
    a = write(tmp_path, "ex.yaml", FILE_A)
    with pytest.raises(ConfigError, match="not found"):
        load_examples([a, tmp_path / "missing.yaml"])
    assert Options.model_validate({"examples_path": str(a)}).examples_path == [a]
    assert [p.name for p in Options().examples_path] == ["safety_examples.yaml", "safety_examples_*.yaml"]


def test_weights_round_trip(tmp_path: Path) -> None:
    head = head_for(KeywordEmbedder())
    save_head(head, tmp_path / "c.npz")
    loaded = load_head(tmp_path / "c.npz")
    assert loaded is not None and loaded.threshold == head.threshold and loaded.embedder == head.embedder
    x = KeywordEmbedder().embed(["I have the pills", "my chest hurts", "the weather"])
    np.testing.assert_allclose(loaded.predict(x)[0], head.predict(x)[0], rtol=1e-6)
    scores, categories, _ = loaded.crisis(x)
    assert categories[:2] == ["suicide", "medical"] and scores[2] < 0.5 < min(scores[:2])
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    assert load_head(tmp_path / "bad.npz") is None and load_head(tmp_path / "absent.npz") is None


def test_training_key_follows_files_and_settings(tmp_path: Path) -> None:
    a = write(tmp_path, "ex.yaml", FILE_A)
    key = training_key([a], {"epochs": 1})
    assert key == training_key([a], {"epochs": 1}) != training_key([a], {"epochs": 2})
    a.write_text(FILE_A + "\n# edited\n", encoding="utf-8")
    assert training_key([a], {"epochs": 1}) != key


def test_engine_uses_the_classifier_then_the_nearest_examples(tmp_path: Path) -> None:
    embedder = KeywordEmbedder()
    examples = load_examples(write(tmp_path, "ex.yaml", FILE_A))
    engine = EmbeddedSafety(embedder, examples, Options(detector="classifier", cache_dir=None), head_for(embedder))
    verdict = engine.check_message("so yeah, pills ending life pills")
    assert verdict.flagged and verdict.category == "suicide" and verdict.source.startswith("classifier:")
    assert verdict.level == "urgent"
    assert engine.check_message("my chest feels weird, I can hardly breathe at all").category == "medical"
    assert not engine.check_message("the commute and the weather were awful today").flagged
    assert engine.check_message("I'm going to kill myself tonight").source.startswith("pattern:")  # patterns first


def test_an_other_embedder_falls_back_to_the_nearest_examples(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    embedder = KeywordEmbedder()
    head = SafetyHead(**{**head_for(embedder).__dict__, "embedder": "another model"})
    examples = load_examples(write(tmp_path, "ex.yaml", FILE_A))
    engine = EmbeddedSafety(embedder, examples, Options(detector="classifier", cache_dir=None), head)
    with caplog.at_level(logging.WARNING):
        engine.warmup()
    assert engine.head is None and "another embedding model" in caplog.text


def test_missing_or_stale_weights_are_logged_and_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = write(tmp_path, "ex.yaml", FILE_A)
    options = Options(examples_path=[a], classifier_path=tmp_path / "c.npz")
    with caplog.at_level(logging.WARNING):
        assert load_classifier(options) is None
    assert "weights not found" in caplog.text
    head = head_for(KeywordEmbedder(), key=training_key([a], {"epochs": 1}))
    save_head(SafetyHead(**{**head.__dict__, "settings": {"epochs": 1}}), tmp_path / "c.npz")
    assert load_classifier(options) is not None
    a.write_text(FILE_A.replace("gone", "away"), encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_classifier(options) is None
    assert "other examples" in caplog.text
    assert load_classifier(Options(examples_path=[a], classifier_path=None)) is None


def test_threshold_keeps_held_out_false_positives_under_the_limit() -> None:
    scores = np.array([0.99, 0.9, 0.8, 0.7, 0.95, 0.6, 0.3, 0.2, 0.1, 0.05], dtype=np.float32)
    is_crisis = np.array([True] * 4 + [False] * 6)
    by_patterns = np.zeros(10, dtype=bool)
    threshold, figures = train_safety.choose_threshold(scores, is_crisis, by_patterns, max_fp=1 / 6)
    assert 0.6 < threshold <= 0.7  # one negative (0.95) may be flagged, the next (0.6) may not
    assert figures == {"held_out_recall": 1.0, "held_out_false_positives": round(1 / 6, 4)}
    by_patterns[4] = True  # the patterns already spend the allowance
    threshold, _ = train_safety.choose_threshold(scores, is_crisis, by_patterns, max_fp=1 / 6)
    assert threshold > 0.6


def test_folds_are_stratified_and_seeded() -> None:
    y = np.array([0] * 10 + [1] * 5 + [2] * 5)
    folds = train_safety.folds_of(y, 5, seed=3)
    assert (folds == train_safety.folds_of(y, 5, seed=3)).all()
    for k in range(5):
        assert np.bincount(y[folds == k], minlength=3).tolist() == [2, 1, 1]


def test_a_tiny_training_learns_the_examples() -> None:
    """The real trainer (torch, seeded) on a few separable fake embeddings."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(len(LABELS)), 6)
    x = (np.eye(len(LABELS), 16)[y] + 0.05 * rng.standard_normal((len(y), 16))).astype(np.float32)
    urgent = (np.arange(len(y)) % 2).astype(np.float32)
    settings = {**train_safety.SETTINGS, "epochs": 80, "hidden": 32, "batch": 16, "lr": 0.01, "dropout": 0.0}
    w1, b1, w2, b2 = train_safety.fit(x, y, urgent, settings)
    again = train_safety.fit(x, y, urgent, settings)
    np.testing.assert_allclose(w2, again[2], atol=1e-5)  # seeded
    probs, _ = SafetyHead(w1, b1, w2, b2, 0.5, "", "").predict(x)
    assert (probs.argmax(axis=1) == y).mean() == 1.0
