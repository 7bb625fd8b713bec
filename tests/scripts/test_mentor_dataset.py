"""The hand-written mentor dataset: size, emotion coverage, the mentor's spoken style, a clean split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from backend.config import REPO_ROOT
from backend.engines.protocols import EMOTIONS
from scripts.common.mentor_data import (
    asks_question,
    exchanges,
    has_markdown_or_emoji,
    load_conversations,
    sentence_count,
    word_count,
)

pytestmark = pytest.mark.fast

DATA = REPO_ROOT / "data" / "mentor"


@pytest.fixture(scope="module")
def train() -> list[dict[str, Any]]:
    return load_conversations(DATA / "train.jsonl")


@pytest.fixture(scope="module")
def val() -> list[dict[str, Any]]:
    return load_conversations(DATA / "val.jsonl")


def _replies(records: list[dict[str, Any]]) -> list[str]:
    return [e.reply for e in exchanges(records)]


def test_enough_exchanges_and_a_val_share_near_15_percent(train: list[Any], val: list[Any]) -> None:
    """At least 400 exchanges in all, split about 85/15 by conversation."""
    n_train, n_val = len(list(exchanges(train))), len(list(exchanges(val)))
    assert n_train + n_val >= 400
    assert 0.10 <= n_val / (n_train + n_val) <= 0.20


def test_every_emotion_is_well_covered(train: list[Any], val: list[Any]) -> None:
    """Each emotion the server passes labels at least 40 user turns, and val sees every emotion too."""
    all_counts = Counter(e.emotion for e in exchanges(train + val))
    assert set(all_counts) == set(EMOTIONS)
    assert min(all_counts.values()) >= 40
    assert set(Counter(e.emotion for e in exchanges(val))) == set(EMOTIONS)


def test_many_conversations_have_follow_ups(train: list[Any], val: list[Any]) -> None:
    """Most conversations are multi-turn (2-3 exchanges), so replies learn to use earlier turns."""
    lengths = Counter(len(r["turns"]) // 2 for r in train + val)
    assert lengths[2] + lengths[3] >= 150
    assert max(lengths) <= 3


def test_replies_are_speakable_and_brief(train: list[Any], val: list[Any]) -> None:
    """No reply has markdown or emoji; each is 10-45 words in one to three sentences; most ask a question."""
    replies = _replies(train + val)
    assert not [r for r in replies if has_markdown_or_emoji(r)]
    assert not [r for r in replies if not 10 <= word_count(r) <= 45]
    assert not [r for r in replies if not 1 <= sentence_count(r) <= 3]
    assert sum(asks_question(r) for r in replies) / len(replies) >= 0.8
    assert not [r for r in replies if r.count("?") > 1 and not r.endswith("?")]


def test_safety_replies_point_to_real_help(train: list[Any], val: list[Any]) -> None:
    """A handful of replies answer danger by pointing to an emergency number or crisis line."""
    help_replies = [r for r in _replies(train + val) if "emergency number" in r or "crisis line" in r]
    assert len(help_replies) >= 5


def test_split_is_by_conversation(train: list[Any], val: list[Any]) -> None:
    """Conversation ids are unique and no conversation is in both train and val."""
    train_ids = [r["id"] for r in train]
    val_ids = [r["id"] for r in val]
    assert len(set(train_ids)) == len(train_ids) and len(set(val_ids)) == len(val_ids)
    assert not set(train_ids) & set(val_ids)


def test_style_detector_catches_what_a_voice_cannot_say() -> None:
    """The markup detector flags bold, bullets, numbered items, actions and emoji, not plain speech."""
    for bad in ["**Breathe.**", "- first\n- second", "1. Rest", "*hugs* you", "Sad 😢", "Hi ✨", "# Tips"]:
        assert has_markdown_or_emoji(bad), bad
    for good in ["That's hard, and it's okay. What happened?", "I'm sorry - that hurts.", "It's 5 p.m."]:
        assert not has_markdown_or_emoji(good), good


def test_built_files_match_the_sources(tmp_path: Path) -> None:
    """The committed JSONL equals what scripts/training/build_mentor_dataset.py builds from data/mentor/source."""
    from scripts.training.build_mentor_dataset import main

    assert main(["--out", str(tmp_path)]) == 0
    for name in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / name).read_text(encoding="utf-8") == (DATA / name).read_text(encoding="utf-8")
