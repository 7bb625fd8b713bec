"""clean_for_speech and trim_reply: what the TTS voice is given."""

from __future__ import annotations

import pytest

from backend.mentor.speakable import clean_for_speech, split_sentences, trim_reply

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**You** are not alone 😊.", "You are not alone."),
        ("*smiles warmly* I hear you.", "I hear you."),
        ("## Tips\n- Breathe slowly\n- Call a friend", "Tips Breathe slowly Call a friend"),
        ("1. Rest\n2) Drink water", "Rest Drink water"),
        ("See [this page](https://example.org) or `code`.", "See this page or code."),
        ("Great job! 🎉👍🏽 Keep going ❤️", "Great job! Keep going"),
        ("I'm here [pause] for you.", "I'm here for you."),
        ("  lots   of\n\nspace  ", "lots of space"),
        ("😊 🙏", ""),
        ("*sighs*", ""),
    ],
)
def test_clean_for_speech(raw: str, spoken: str) -> None:
    """Markdown, emoji, stage directions and extra whitespace are removed; the words stay."""
    assert clean_for_speech(raw) == spoken


def test_plain_text_is_unchanged() -> None:
    """Ordinary sentences with numbers, apostrophes and well-being hyphens pass through as they are."""
    text = "It's 3.5 miles, and your well-being matters: take it slowly."
    assert clean_for_speech(text) == text


def test_trim_reply_keeps_first_sentences() -> None:
    """trim_reply keeps at most max_sentences, not splitting decimals or abbreviations."""
    text = "Dr. Lee said 2.5 hours. That is fine! Is it? One more. And more."
    assert trim_reply(text) == "Dr. Lee said 2.5 hours. That is fine! Is it?"
    assert trim_reply(text, max_sentences=1) == "Dr. Lee said 2.5 hours."
    assert trim_reply("No end mark") == "No end mark"


def test_split_sentences_on_newlines_and_quotes() -> None:
    """Line breaks end sentences; closing quotes stay with their sentence; e.g. is not an end."""
    assert split_sentences('He said "yes." Then, e.g. later\nNext') == [
        'He said "yes."',
        "Then, e.g. later",
        "Next",
    ]
