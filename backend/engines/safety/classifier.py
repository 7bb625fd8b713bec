"""A small classifier over the sentence embeddings, trained on the team's labelled examples: the second stage of
the ``embedded`` safety engine when its weights are built (``python -m scripts.training.train_safety``, run once by
``scripts/ops/prepare_models.py``).

One hidden layer on the MiniLM embedding of a (normalised) sentence, two outputs: eight classes (``none`` and the
seven categories) and whether it is happening now (``urgent``, read for crisis sentences only). A sentence is
flagged when its probability of being a crisis, ``1 - p(none)``, reaches the threshold chosen when it was trained
(on development examples held out of training, never on the frozen test set). Inference is numpy only; the weights
are kept in one ``.npz`` file under ``models/cache/`` (never committed), with what they were built from: a hash of
the example files and the training settings, and the embedder they were trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from backend.engines.protocols import SAFETY_CATEGORIES, SafetyCategory

logger = logging.getLogger(__name__)

LABELS: tuple[str, ...] = ("none", *SAFETY_CATEGORIES)  # the classes, in output order
_FINGERPRINT = "a sentence that tells one embedding model from another"

Floats = NDArray[np.float32]


def embedder_id(embed: Callable[[list[str]], np.ndarray]) -> str:
    """A short id of an embedding model (the embedder names none): its embedding of one probe sentence."""
    probe = np.round(np.asarray(embed([_FINGERPRINT])[0], dtype=np.float32), 3).astype(np.float32).tobytes()
    return hashlib.sha256(probe).hexdigest()[:16]


def training_key(files: Sequence[Path], settings: Mapping[str, Any]) -> str:
    """What a build depends on: the example files' bytes (in order) and the training settings."""
    digest = hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode("utf-8"))
    for path in files:
        digest.update(b"\0" + path.name.encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


@dataclass(frozen=True)
class SafetyHead:
    """The trained weights: ``x @ w1 + b1`` -> ReLU -> ``@ w2 + b2`` gives the eight class logits and the urgency
    logit (the last column)."""

    w1: Floats
    b1: Floats
    w2: Floats
    b2: Floats
    threshold: float  # flagged when 1 - p(none) >= threshold
    embedder: str  # embedder_id of the model it was trained on
    key: str  # training_key of its examples and settings
    settings: dict[str, Any] = field(default_factory=dict)  # the training settings (part of the key)
    figures: dict[str, Any] = field(default_factory=dict)  # held-out recall and false positives, examples

    def predict(self, x: np.ndarray) -> tuple[Floats, Floats]:
        """Class probabilities (n, 8) in ``LABELS`` order and the probability of ``urgent`` (n,)."""
        hidden = np.maximum(np.asarray(x, dtype=np.float32) @ self.w1 + self.b1, 0.0)
        out = hidden @ self.w2 + self.b2
        logits = out[:, : len(LABELS)]
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        urgent = 1.0 / (1.0 + np.exp(-out[:, len(LABELS)]))
        return probs.astype(np.float32), urgent.astype(np.float32)

    def crisis(self, x: np.ndarray) -> tuple[Floats, list[SafetyCategory], Floats]:
        """Per row: the probability of a crisis, the likeliest category, the probability of ``urgent``."""
        probs, urgent = self.predict(x)
        categories = [SAFETY_CATEGORIES[int(i)] for i in probs[:, 1:].argmax(axis=1)]
        return (1.0 - probs[:, 0]).astype(np.float32), categories, urgent


def save_head(head: SafetyHead, path: Path) -> None:
    """Write the weights and what they were built from (atomically)."""
    meta = {
        "threshold": head.threshold,
        "embedder": head.embedder,
        "key": head.key,
        "settings": head.settings,
        "figures": head.figures,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, w1=head.w1, b1=head.b1, w2=head.w2, b2=head.b2, meta=np.array(json.dumps(meta)))
    os.replace(tmp, path)


def read_key(path: Path) -> str | None:
    """The training key stored with the weights at ``path``; None when there are none (or unreadable)."""
    head = load_head(path)
    return head.key if head is not None else None


def load_head(path: Path) -> SafetyHead | None:
    """The weights at ``path``; None when the file is missing or unreadable (logged)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: np.asarray(data[name], dtype=np.float32) for name in ("w1", "b1", "w2", "b2")}
        head = SafetyHead(
            **arrays,
            threshold=float(meta["threshold"]),
            embedder=str(meta["embedder"]),
            key=str(meta["key"]),
            settings=dict(meta.get("settings") or {}),
            figures=dict(meta.get("figures") or {}),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("safety classifier weights unreadable", extra={"path": str(path), "error": repr(exc)})
        return None
    if head.w2.shape[1] != len(LABELS) + 1 or head.w1.shape[1] != head.w2.shape[0]:
        logger.warning("safety classifier weights have the wrong shape", extra={"path": str(path)})
        return None
    return head
