"""Persona adherence on the validation split: does the mentor answer as the persona it is given?

For every persona (config/personas/) and each of the first N validation user turns, a reply is generated as
the server would (``build_messages`` with that persona's prompt and guidance, greedy server settings), and
judged by ``mentor_data.persona_markers``: the words that show a reply doing what a persona's prompt asks (a
study technique for the study coach, a career step for the career mentor, a kind, calming step for the
wellbeing mentor). Per persona: the share of replies with its own markers ("adherence"), the share with each
other persona's markers (the same user turns, so the topic is held fixed), the lift of its own markers over
the same turns answered by the default persona, and the speakability figures of eval_mentor.py. A second judge
reads the whole reply, not a word list: each reply is attributed to the persona whose training replies
(data/mentor/train.jsonl, by conversation persona) its MiniLM embedding is closest to (cosine to the centroid).

    python -m scripts.evals.personas --limit 30 --out models/claritymentor-lora/eval_personas.json
    python -m scripts.evals.personas --adapter /tmp/lora --limit 5 --out /tmp/p.json   # a quick look
    python -m scripts.evals.personas --rejudge /tmp/p.json    # judge the replies of a report again

Blocking and CPU heavy (personas x turns generations).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.config import REPO_ROOT, Settings, resolve_path
from backend.mentor.personas import load_personas
from scripts.common.mentor_data import PERSONA_MARKERS, Exchange, exchanges, load_conversations, persona_markers
from scripts.evals.mentor import reply_figures


def judge(replies: dict[str, list[str]], default: str) -> dict[str, Any]:
    """Marker shares per prompted persona: {persona: {"adherence", "markers": {other: share}, "lift"}}."""
    out: dict[str, Any] = {}
    for persona, texts in replies.items():
        n = max(1, len(texts))
        counts = [persona_markers(t) for t in texts]
        shares = {p: sum(c[p] > 0 for c in counts) / n for p in PERSONA_MARKERS}
        baseline = [persona_markers(t) for t in replies.get(default, [])]
        base_share = sum(c.get(persona, 0) > 0 for c in baseline) / max(1, len(baseline))
        own = shares.get(persona, 0.0)
        out[persona] = {
            "adherence": own,
            "markers": shares,
            "lift_over_default": own - base_share,
            "own_markers_most": sum(c.get(persona, 0) > 0 and c.get(persona, 0) >= max(c.values()) for c in counts) / n,
        }
    return out


def attribution(replies: dict[str, list[str]], train: Path, settings: Settings) -> dict[str, dict[str, float]]:
    """{prompted persona: {persona: share of its replies closest to that persona's training replies}}."""
    import numpy as np

    from backend.engines.emotion.fused import load as load_emotion

    default = load_personas(settings.mentor).default_id
    embed = load_emotion(settings.emotion).embed
    by_persona: dict[str, list[str]] = {}
    for ex in exchanges(load_conversations(train)):
        if not ex.memories:
            by_persona.setdefault(ex.persona or default, []).append(ex.reply)
    names = sorted(by_persona)
    centroids = np.stack([embed(by_persona[n]).mean(axis=0) for n in names])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    out: dict[str, dict[str, float]] = {}
    for persona, texts in replies.items():
        nearest = (embed(texts) @ centroids.T).argmax(axis=1) if texts else np.zeros(0, dtype=int)
        out[persona] = {n: float((nearest == i).mean()) if len(texts) else 0.0 for i, n in enumerate(names)}
    return out


def generate(adapter: Path | None, settings: Settings, val: list[Exchange]) -> dict[str, Any]:
    """Replies for every persona and val turn with the base model (``adapter`` None) or the adapter."""
    from backend.engines.llm.transformers import load as load_llm
    from backend.mentor.prompt_builder import build_messages, load_mentor_prompt

    llm = settings.llm.model_copy(update={"adapter_path": adapter})
    chat = load_llm(llm)
    base = load_mentor_prompt(settings.mentor)
    catalog = load_personas(settings.mentor)
    replies: dict[str, list[str]] = {}
    seconds: dict[str, list[float]] = {}
    for persona in catalog:
        prompt = persona.prompt(base)
        for ex in val:
            messages = build_messages(
                prompt,
                ex.history,
                ex.user_text,
                ex.emotion,
                count_tokens=chat.count_tokens,
                max_prompt_tokens=llm.max_prompt_tokens,
            )
            started = time.perf_counter()
            replies.setdefault(persona.id, []).append(
                "".join(chat.stream(messages, threading.Event(), persona.generation))
            )
            seconds.setdefault(persona.id, []).append(time.perf_counter() - started)
    return {
        "adapter_loaded": chat.adapter_loaded,
        "judged": judge(replies, catalog.default_id),
        "style": {p: reply_figures(replies[p], seconds[p]) for p in replies},
        "replies": replies,
    }


def print_table(report: dict[str, Any]) -> None:
    for model in ("base", "adapter"):
        if model not in report:
            continue
        print(f"\n{model}: persona -> share of replies with each persona's markers (own = adherence)")
        personas = list(report[model]["judged"])
        print(f"{'prompted as':<16}" + "".join(f"{p:>15}" for p in personas) + f"{'lift':>9}")
        for p in personas:
            row = report[model]["judged"][p]
            cells = "".join(f"{row['markers'][q]:>15.2f}" for q in personas)
            print(f"{p:<16}{cells}{row['lift_over_default']:>9.2f}")
        if "attributed" in report[model]:
            print(f"{model}: persona -> share of replies closest to each persona's training replies (MiniLM)")
            for p in personas:
                row = report[model]["attributed"][p]
                print(f"{p:<16}" + "".join(f"{row[q]:>15.2f}" for q in personas))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Persona adherence of the mentor on the validation split.")
    p.add_argument("--val", type=Path, default=REPO_ROOT / "data/mentor/val.jsonl")
    p.add_argument("--adapter", type=Path, default=None, help="adapter folder (default: llm.adapter_path)")
    p.add_argument("--limit", type=int, default=30, help="the first N val user turns")
    p.add_argument("--base", action="store_true", help="also evaluate the base model without the adapter")
    p.add_argument("--out", type=Path, default=Path("eval_personas.json"))
    p.add_argument("--train", type=Path, default=REPO_ROOT / "data/mentor/train.jsonl", help="attribution references")
    p.add_argument("--rejudge", type=Path, default=None, help="judge the replies of this report again, then exit")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    settings = Settings()
    if args.rejudge is not None:
        earlier: dict[str, Any] = json.loads(args.rejudge.read_text(encoding="utf-8"))
        default = load_personas(settings.mentor).default_id
        for model in ("base", "adapter"):
            if model in earlier:
                replies = earlier[model]["replies"]
                earlier[model]["judged"] = judge(replies, default)
                earlier[model]["attributed"] = attribution(replies, args.train, settings)
        args.rejudge.write_text(json.dumps(earlier, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print_table(earlier)
        return 0
    adapter = resolve_path(args.adapter or settings.llm.adapter_path or "models/claritymentor-lora")
    val = list(exchanges(load_conversations(args.val)))[: args.limit]
    report: dict[str, Any] = {
        "val_file": str(args.val),
        "adapter_dir": str(adapter),
        "generated_per_persona": len(val),
        "markers": {k: list(v) for k, v in PERSONA_MARKERS.items()},
    }
    started = time.perf_counter()
    if args.base:
        report["base"] = generate(None, settings, val)
    report["adapter"] = generate(adapter, settings, val)
    for model in ("base", "adapter"):
        if model in report:
            report[model]["attributed"] = attribution(report[model]["replies"], args.train, settings)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["turns"] = [{"id": e.conversation_id, "turn": e.index, "user": e.user_text} for e in val]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
