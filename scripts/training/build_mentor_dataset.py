"""Compile the hand-written mentor conversations in data/mentor/source/*.txt into train/val JSONL.

Source format (one conversation per block, blank lines between blocks, ``#`` lines are comments)::

    P study-coach                      (optional, first: the persona of the conversation; default: none)
    M | My maths exam is on Monday.    (optional: a fact remembered from an earlier session, given with the
    U sad | I feel sad today.           next user turn; several M lines for several facts)
    A | I'm sorry you're feeling sad today. ...

Each output line is ``{"id": "c0001", "turns": [{"role": "user", "text": ..., "emotion": ...},
{"role": "assistant", "text": ...}, ...]}``, with ``"persona"`` on the record and ``"memories"`` on a user
turn when the source gives them. The split is by conversation and deterministic: conversations
are ordered by id and every conversation whose index falls on VAL_SLOTS of each block of 20 goes to val
(about 15%). Run: ``python -m scripts.training.build_mentor_dataset``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EMOTIONS = ("neutral", "happy", "sad", "anxious", "angry", "surprised")
VAL_SLOTS = frozenset({2, 9, 16})  # of each block of 20 conversations

Conversation = dict[str, Any]


def parse_block(lines: list[str], where: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The persona (if a ``P`` line opens the block) and the turns of one conversation: alternating user (with
    emotion, and the ``M`` memories given before it) and assistant lines."""
    persona: str | None = None
    if lines and lines[0].startswith("P "):
        persona = lines[0][2:].strip()
        lines = lines[1:]
    turns: list[dict[str, Any]] = []
    memories: list[str] = []
    for line in lines:
        head, sep, text = line.partition("|")
        if head.split() == ["M"] and sep and text.strip():
            memories.append(text.strip())
            continue
        if not sep or not text.strip():
            raise ValueError(f"{where}: expected 'U emotion | text' or 'A | text', got {line!r}")
        parts = head.split()
        expected_role = "user" if len(turns) % 2 == 0 else "assistant"
        if parts[0] == "U" and len(parts) == 2 and parts[1] in EMOTIONS and expected_role == "user":
            turn: dict[str, Any] = {"role": "user", "text": text.strip(), "emotion": parts[1]}
            if memories:
                turn["memories"], memories = memories, []
            turns.append(turn)
        elif parts == ["A"] and expected_role == "assistant":
            turns.append({"role": "assistant", "text": text.strip()})
        else:
            raise ValueError(f"{where}: unexpected line {line!r} (wanted a {expected_role} turn)")
    if not turns or len(turns) % 2 or memories:
        raise ValueError(f"{where}: a conversation must end with the mentor's reply (memories go before a user turn)")
    return persona, turns


def read_sources(folder: Path) -> list[tuple[str | None, list[dict[str, Any]]]]:
    conversations: list[tuple[str | None, list[dict[str, Any]]]] = []
    for path in sorted(folder.glob("*.txt")):
        block: list[str] = []
        lines = [*path.read_text(encoding="utf-8").splitlines(), ""]
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if line.startswith("#"):
                continue
            if line:
                block.append(line)
            elif block:
                conversations.append(parse_block(block, f"{path.name}:{number}"))
                block = []
    return conversations


def split(
    conversations: list[tuple[str | None, list[dict[str, Any]]]],
) -> tuple[list[Conversation], list[Conversation]]:
    train: list[Conversation] = []
    val: list[Conversation] = []
    for index, (persona, turns) in enumerate(conversations):
        record: Conversation = {"id": f"c{index + 1:04d}", "turns": turns}
        if persona is not None:
            record["persona"] = persona
        (val if index % 20 in VAL_SLOTS else train).append(record)
    return train, val


def write_jsonl(path: Path, records: list[Conversation]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def summary(name: str, records: list[Conversation]) -> str:
    exchanges = sum(len(r["turns"]) // 2 for r in records)
    emotions = Counter(t["emotion"] for r in records for t in r["turns"] if t["role"] == "user")
    lengths = Counter(len(r["turns"]) // 2 for r in records)
    per_emotion = ", ".join(f"{e} {emotions[e]}" for e in EMOTIONS)
    return (
        f"{name}: {len(records)} conversations, {exchanges} exchanges "
        f"(by length {dict(sorted(lengths.items()))}); {per_emotion}"
    )


def emotion_examples(conversations: list[tuple[str | None, list[dict[str, Any]]]]) -> dict[str, list[str]]:
    """The first user turn of every conversation by its emotion: labelled sentences for the text emotion
    detector (a follow-up's label leans on the turns before it, so follow-ups are left out)."""
    examples: dict[str, list[str]] = {e: [] for e in EMOTIONS}
    for _, turns in conversations:
        first = turns[0]
        if first["text"] not in examples[first["emotion"]]:
            examples[first["emotion"]].append(first["text"])
    return examples


def write_emotion_examples(path: Path, examples: dict[str, list[str]]) -> None:
    header = (
        "# Written by scripts/training/build_mentor_dataset.py from data/mentor/source (do not edit): "
        "the first user turn of\n"
        "# every conversation, by its label. The text emotion detector adds these to config/emotion_examples.yaml\n"
        "# (emotion.extra_examples_path).\n"
    )
    body = yaml.safe_dump({"examples": examples}, allow_unicode=True, sort_keys=False, width=200)
    path.write_text(header + body, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT / "data/mentor/source")
    parser.add_argument("--out", type=Path, default=ROOT / "data/mentor")
    args = parser.parse_args(argv)
    conversations = read_sources(args.source)
    train, val = split(conversations)
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "val.jsonl", val)
    write_emotion_examples(args.out / "emotion_examples.yaml", emotion_examples(conversations))
    print(summary("all", train + val))
    print(summary("train", train))
    print(summary("val", val))
    return 0


if __name__ == "__main__":
    sys.exit(main())
