"""Word error rate."""

from __future__ import annotations

import pytest

from scripts.common.wer import normalize_words, word_error_rate

pytestmark = pytest.mark.fast


def test_identical_after_normalisation() -> None:
    """Case and punctuation do not count as errors; apostrophes inside words are kept."""
    assert word_error_rate("Hello, world! I'm fine.", "hello world i'm fine") == 0.0
    assert normalize_words("Don't stop -- now!") == ["don't", "stop", "now"]


def test_substitution_deletion_insertion() -> None:
    """One substitution, one deletion and one insertion each cost one edit over the reference length."""
    assert word_error_rate("a b c d", "a x c d") == pytest.approx(0.25)
    assert word_error_rate("a b c d", "a c d") == pytest.approx(0.25)
    assert word_error_rate("a b c d", "a b c d e") == pytest.approx(0.25)
    assert word_error_rate("a b", "") == pytest.approx(1.0)


def test_empty_reference() -> None:
    """Empty against empty is perfect; words against an empty reference count per inserted word."""
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("", "two words") == 2.0
