"""Train the safety check's classifier (backend/engines/safety/classifier.py) on the team's development examples.

    python -m scripts.training.train_safety            # build unless the weights match the examples and settings
    python -m scripts.training.train_safety --force    # build anyway
    python -m scripts.training.train_safety --check    # only say whether the weights are current (exit 1 if not)

The examples are the ``safety.examples_path`` files (config/safety_examples*.yaml), embedded with the server's own
sentence embeddings (the emotion engine's MiniLM, frozen). A one-hidden-layer head is trained on them, seeded, on
the CPU in seconds. The flagging threshold is chosen on development examples held out of training: the examples
are split in ``folds`` (stratified by label), a head is trained on all folds but one and scores the one left out,
and the threshold is the lowest at which no more than ``max_false_positives`` of the hard negatives are flagged
(with the patterns, which decide first in the engine). The shipped head is then trained on every example. The
frozen test set (data/safety/test_set.jsonl) is never read here.

The weights go to ``safety.classifier_path`` (models/cache/safety/classifier.npz, git-ignored) with a hash of the
example files and these settings, so an unchanged build is skipped.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from backend.config import Settings, resolve_path
from backend.engines import registry
from backend.engines.embedding_cache import cached_embeddings
from backend.engines.protocols import TextEmbedder
from backend.engines.registry import engine_options
from backend.engines.safety import patterns
from backend.engines.safety.classifier import (
    LABELS,
    SafetyHead,
    embedder_id,
    load_head,
    save_head,
    training_key,
)
from backend.engines.safety.embedded import Example, Options, example_files, load_examples

logger = logging.getLogger(__name__)

# Changing any of these changes the training key (a rebuild).
SETTINGS: dict[str, Any] = {
    "version": 1,
    "hidden": 256,
    "epochs": 40,
    "batch": 64,
    "lr": 0.002,
    "weight_decay": 0.0001,
    "dropout": 0.2,
    "seed": 7,
    "folds": 5,
    "max_false_positives": 0.05,  # of the held-out hard negatives, patterns included
}


def labels_of(examples: Sequence[Example]) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Class index (``LABELS``) and urgency (1.0 for ``urgent``) per example."""
    y = np.array([LABELS.index(e.category or "none") for e in examples], dtype=np.int64)
    urgent = np.array([e.level == "urgent" for e in examples], dtype=np.float32)
    return y, urgent


def fit(
    x: NDArray[np.float32], y: NDArray[np.int64], urgent: NDArray[np.float32], settings: dict[str, Any]
) -> list[NDArray[np.float32]]:
    """Train the head (seeded); its weights w1, b1, w2, b2 as numpy arrays."""
    torch.manual_seed(int(settings["seed"]))
    generator = torch.Generator().manual_seed(int(settings["seed"]))
    dim, hidden, classes = x.shape[1], int(settings["hidden"]), len(LABELS)
    first, second = torch.nn.Linear(dim, hidden), torch.nn.Linear(hidden, classes + 1)
    model = torch.nn.Sequential(
        torch.nn.Dropout(float(settings["dropout"]) / 2),
        first,
        torch.nn.ReLU(),
        torch.nn.Dropout(float(settings["dropout"])),
        second,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(settings["lr"]), weight_decay=float(settings["weight_decay"])
    )
    # Classes are weighted so each counts as much as the hard negatives together would at their share.
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    weights = torch.tensor(len(y) / (classes * np.maximum(counts, 1.0)), dtype=torch.float32)
    xt, yt, ut = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(urgent)
    crisis = yt != 0
    batch, epochs = int(settings["batch"]), int(settings["epochs"])
    steps = epochs * ((len(y) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=float(settings["lr"]), total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch):
            rows = order[start : start + batch]
            out = model(xt[rows])
            loss = torch.nn.functional.cross_entropy(out[:, :classes], yt[rows], weight=weights)
            mask = crisis[rows]
            if bool(mask.any()):
                loss = loss + 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(
                    out[mask, classes], ut[rows][mask]
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return [t.detach().numpy().astype(np.float32) for t in (first.weight.T, first.bias, second.weight.T, second.bias)]


def folds_of(y: NDArray[np.int64], folds: int, seed: int) -> NDArray[np.int64]:
    """A fold number per example, stratified by label (seeded)."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), dtype=np.int64)
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        fold[rows] = np.arange(len(rows)) % folds
    return fold


def held_out_scores(
    x: NDArray[np.float32], y: NDArray[np.int64], urgent: NDArray[np.float32], settings: dict[str, Any]
) -> NDArray[np.float32]:
    """Each example's probability of a crisis from a head trained without its fold."""
    fold = folds_of(y, int(settings["folds"]), int(settings["seed"]))
    scores = np.zeros(len(y), dtype=np.float32)
    for k in range(int(settings["folds"])):
        train, test = fold != k, fold == k
        w1, b1, w2, b2 = fit(x[train], y[train], urgent[train], settings)
        head = SafetyHead(w1, b1, w2, b2, threshold=0.5, embedder="", key="")
        scores[test] = head.crisis(x[test])[0]
    return scores


def choose_threshold(
    scores: NDArray[np.float32], is_crisis: NDArray[np.bool_], by_patterns: NDArray[np.bool_], max_fp: float
) -> tuple[float, dict[str, float]]:
    """The lowest threshold at which at most ``max_fp`` of the hard negatives are flagged (patterns or head), and
    the held-out recall and false positives at it."""
    negatives = ~is_crisis
    allowed = int(np.floor(max_fp * negatives.sum())) - int((by_patterns & negatives).sum())
    # Negatives the patterns leave to the head, highest score first: the threshold sits above the (allowed+1)th.
    left = np.sort(scores[negatives & ~by_patterns])[::-1]
    threshold = 0.5 if allowed >= len(left) else float(left[max(allowed, 0)]) + 1e-4
    threshold = float(min(max(threshold, 0.05), 0.99))
    flagged = by_patterns | (scores >= threshold)
    return threshold, {
        "held_out_recall": round(float(flagged[is_crisis].mean()), 4),
        "held_out_false_positives": round(float(flagged[negatives].mean()), 4),
    }


def embed_examples(embedder: TextEmbedder, examples: Sequence[Example], options: Options) -> NDArray[np.float32]:
    texts = [patterns.normalize(e.text) for e in examples]
    return cached_embeddings(embedder.embed, embedder_id(embedder.embed), texts, options.cache_dir)


def load_embedder(settings: Settings) -> TextEmbedder:
    emotion = registry.EMOTION.loader(settings.emotion)()
    if not isinstance(emotion, TextEmbedder):
        raise SystemExit("the emotion engine has no sentence embeddings: nothing to train the safety classifier on")
    return emotion


def train(
    examples: Sequence[Example], x: NDArray[np.float32], settings: dict[str, Any], embedder: str, key: str
) -> SafetyHead:
    """Choose the threshold on held-out folds, then train the shipped head on every example."""
    y, urgent = labels_of(examples)
    is_crisis = y != 0
    by_patterns = np.array([patterns.check(e.text).flagged for e in examples])
    scores = held_out_scores(x, y, urgent, settings)
    threshold, figures = choose_threshold(scores, is_crisis, by_patterns, float(settings["max_false_positives"]))
    w1, b1, w2, b2 = fit(x, y, urgent, settings)
    return SafetyHead(w1, b1, w2, b2, threshold, embedder, key, dict(settings), {**figures, "examples": len(y)})


def build(force: bool = False, check: bool = False, settings: Settings | None = None) -> int:
    """Build the weights unless current; 0 when they are (or were built), 1 for ``check`` when they are not."""
    settings = settings or Settings()
    options = engine_options("safety", "embedded", settings.safety, Options)
    if options.classifier_path is None:
        print("safety: safety.classifier_path is null; no classifier to build")
        return 0
    path = resolve_path(options.classifier_path)
    key = training_key(example_files(options.examples_path), SETTINGS)
    current = load_head(path)
    if current is not None and current.key == key and not force:
        print(f"safety: classifier in {path} is current")
        return 0
    if check:
        print(f"safety: classifier in {path} is {'stale' if current else 'missing'} (run without --check)")
        return 1
    started = time.perf_counter()
    examples = load_examples(options.examples_path)
    embedder = load_embedder(settings)
    x = embed_examples(embedder, examples, options)
    head = train(examples, x, dict(SETTINGS), embedder_id(embedder.embed), key)
    save_head(head, path)
    print(
        f"safety: classifier trained on {len(examples)} examples in {time.perf_counter() - started:.1f} s"
        f" (threshold {head.threshold:.3f}, held out: recall {head.figures['held_out_recall']:.1%},"
        f" false positives {head.figures['held_out_false_positives']:.1%}) -> {path}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="build even when the weights are current")
    parser.add_argument("--check", action="store_true", help="only say whether the weights are current")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return build(force=args.force, check=args.check)


if __name__ == "__main__":
    raise SystemExit(main())
