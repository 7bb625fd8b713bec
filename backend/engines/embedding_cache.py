"""Example sentences' embeddings, computed once per model and kept on disk: the emotion engine's labelled
examples and the safety check's are embedded at every start otherwise (seconds of CPU)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from backend.config import resolve_path

logger = logging.getLogger(__name__)

Embedder = Callable[[list[str]], np.ndarray]


def cached_embeddings(
    embed: Embedder, model_name: str, texts: Sequence[str], cache_dir: Path | None
) -> NDArray[np.float32]:
    """The embeddings of ``texts``, read from ``cache_dir`` when this model embedded exactly these texts before
    (a file named by their hash), else computed and written there (best effort)."""
    key = hashlib.sha256("\n".join([model_name, *texts]).encode("utf-8")).hexdigest()[:24]
    path = resolve_path(cache_dir) / f"examples-{key}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            cached = np.load(path)
            if cached.shape[0] == len(texts):
                return np.asarray(cached, dtype=np.float32)
        except (OSError, ValueError):
            logger.warning("example embedding cache unreadable; recomputing", extra={"path": str(path)})
    vectors = np.asarray(embed(list(texts)), dtype=np.float32)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, vectors)
            os.replace(tmp, path)
        except OSError:
            logger.warning("example embedding cache not written", extra={"path": str(path)})
    return vectors
