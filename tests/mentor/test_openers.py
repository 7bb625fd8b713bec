"""Opening clauses (backend/mentor/openers.py): loading, choice by emotion, variety, the reply text."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.config import resolve_path
from backend.engines.protocols import EMOTIONS
from backend.mentor.openers import choose_opener, continue_after, load_openers

pytestmark = pytest.mark.fast

OPENERS = {e: (f"{e} one,", f"{e} two,", f"{e} three,") for e in EMOTIONS}


def test_the_shipped_openers_cover_every_emotion_and_end_open() -> None:
    openers = load_openers(resolve_path(Path("config/openers.yaml")))
    assert set(openers) >= set(EMOTIONS)
    for choices in openers.values():
        assert len(choices) >= 4
        for opener in choices:
            assert opener[-1] not in ".!?"  # the LLM goes on from it


def test_a_missing_emotion_or_a_wrong_shape_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "openers.yaml"
    path.write_text("neutral: [Okay,]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no openers for happy"):
        load_openers(path)
    path.write_text("- Okay\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mapping"):
        load_openers(path)


def test_the_choice_follows_the_emotion_and_is_the_same_for_the_same_message() -> None:
    first = choose_opener(OPENERS, "sad", "My dog died.")
    assert first in OPENERS["sad"]
    assert choose_opener(OPENERS, "sad", "My  dog died.") == first
    assert choose_opener(OPENERS, None, "My dog died.") in OPENERS["neutral"]
    assert choose_opener(OPENERS, "bewildered", "My dog died.") in OPENERS["neutral"]


def test_openers_used_in_recent_replies_are_not_used_again_until_all_were() -> None:
    recent = ["sad one, that is hard. What happened?", "Sad two, losing him hurts."]
    for text in ("a", "b", "c", "d"):
        assert choose_opener(OPENERS, "sad", text, recent) == "sad three,"
    everything = [*recent, "sad three, yes."]
    assert choose_opener(OPENERS, "sad", "a", everything) in OPENERS["sad"]


def test_messages_spread_over_the_choices() -> None:
    picked = {choose_opener(OPENERS, "happy", f"message number {i}") for i in range(40)}
    assert picked == set(OPENERS["happy"])


def test_the_reply_is_the_opener_then_the_continuation() -> None:
    assert continue_after("I'm sorry,", " losing him is hard.") == "I'm sorry, losing him is hard."
    assert continue_after("I'm sorry,", "") == "I'm sorry,"
    assert continue_after("", "Hello.") == "Hello."
