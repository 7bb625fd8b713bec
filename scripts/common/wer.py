"""Word error rate: word-level Levenshtein distance divided by the reference length."""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^\w\s']+")


def normalize_words(text: str) -> list[str]:
    """Lowercase, drop punctuation (apostrophes inside words are kept), split on whitespace."""
    cleaned = _NON_WORD.sub(" ", text.lower())
    return [w.strip("'") for w in cleaned.split() if w.strip("'")]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words; 0.0 when both are empty.

    An empty reference with a non-empty hypothesis counts as 1.0 per inserted word.
    """
    ref = normalize_words(reference)
    hyp = normalize_words(hypothesis)
    if not ref:
        return float(len(hyp))
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)
