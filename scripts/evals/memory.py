"""Memory use: in a second session, does the mentor's reply use what the user said in the first one?

A scripted set of two-session conversations (MEMORY_SET: a fact said in session 1, a related message in session
2, the words that show the fact was used). Each runs through the server's own turn pipeline with the real
models (emotion + MiniLM, the LLM with its adapter) and a throwaway SQLite database: session 1's turn is
answered and its follow-up keeps the salient facts; session 2's message is answered once with memory (the
facts recalled into the prompt) and once without. Reported: how often the fact was kept, how often it was
recalled into session 2's prompt, and how often session 2's reply uses it (one of its words the message did not
already contain), with and without memory; and, as a control, how often the fact is recalled for another
conversation's (unrelated) message of the same user.

    python -m scripts.evals.memory --out models/claritymentor-lora/eval_memory.json
    python -m scripts.evals.memory --adapter /tmp/lora --limit 5

Blocking and CPU heavy (four generations per conversation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.config import Settings, resolve_path
from backend.engines.protocols import ChatMessage, ChatModel, GenerationOptions
from backend.mentor.prompt_builder import MEMORY_INTRO


@dataclass(frozen=True)
class TwoSessions:
    said: str  # session 1: the user's message holding the fact
    later: str  # session 2: a related message that does not repeat it
    uses: tuple[str, ...]  # words of the fact that show a reply used it


# Written for this measurement; none of these facts is in the training data (data/mentor/source/14_memory.txt).
MEMORY_SET: tuple[TwoSessions, ...] = (
    TwoSessions(
        "My son Max starts primary school next Tuesday.",
        "I'm worried about how the school run will go.",
        ("max", "son", "primary", "tuesday"),
    ),
    TwoSessions(
        "I have my citizenship interview on the fourteenth.",
        "I keep practising answers in the mirror.",
        ("citizenship", "interview", "fourteenth"),
    ),
    TwoSessions(
        "My wife Sara is pregnant with our first baby.",
        "I can't stop thinking about becoming a dad.",
        ("sara", "wife", "baby", "pregnant"),
    ),
    TwoSessions(
        "I want to open my own bakery next year.", "I spent the whole weekend testing bread recipes.", ("bakery",)
    ),
    TwoSessions(
        "My father is having heart surgery on Wednesday.",
        "The hospital called to confirm the time.",
        ("father", "dad", "heart", "surgery", "wednesday"),
    ),
    TwoSessions(
        "My flatmate Tom never pays his share of the bills.",
        "Money is tight again this month.",
        ("tom", "flatmate", "bills"),
    ),
    TwoSessions(
        "I'm training for a half marathon in October.",
        "My knee has been hurting after my runs.",
        ("marathon", "october", "training"),
    ),
    TwoSessions(
        "My piano recital is on Saturday evening.",
        "My hands get shaky when I think about performing.",
        ("piano", "recital", "saturday"),
    ),
    TwoSessions(
        "I am trying to quit smoking this month.",
        "I really wanted a cigarette after work today.",
        ("quit", "quitting", "smoking"),
    ),
    TwoSessions(
        "My grandmother Rosa is turning ninety in July.",
        "I want to plan a family party.",
        ("rosa", "grandmother", "ninety", "july"),
    ),
    TwoSessions(
        "I have a final interview at the bank on Thursday.",
        "What do I say if they ask about my weaknesses?",
        ("interview", "bank", "thursday"),
    ),
    TwoSessions(
        "My cat Milo has been hiding and not eating.",
        "I'm taking him to the vet tomorrow.",
        ("milo", "cat", "eating", "hiding"),
    ),
    TwoSessions(
        "My best friend Priya is moving to Canada next month.",
        "We're having a goodbye dinner tonight.",
        ("priya", "canada", "moving"),
    ),
    TwoSessions(
        "I failed my accounting exam in the spring.", "The resit is in two weeks.", ("accounting", "exam", "failed")
    ),
    TwoSessions(
        "My partner and I are buying our first house.",
        "The bank finally approved our mortgage.",
        ("house", "partner", "buying"),
    ),
    TwoSessions(
        "I want to write a novel before I turn thirty.", "I wrote two pages this morning.", ("novel", "thirty")
    ),
    TwoSessions(
        "My manager Karen criticised my report in front of everyone.",
        "I have a meeting with her tomorrow.",
        ("karen", "manager", "report", "criticised"),
    ),
    TwoSessions(
        "My daughter Emma has a swimming competition on Sunday.",
        "She has been practising every morning.",
        ("emma", "daughter", "swimming", "competition", "sunday"),
    ),
    TwoSessions(
        "I am moving to Lisbon for a new job in September.",
        "I started packing up my books.",
        ("lisbon", "september", "job", "moving"),
    ),
    TwoSessions(
        "My uncle Frank passed away last week.",
        "The funeral is on Friday and I don't know what to say.",
        ("frank", "uncle"),
    ),
)


def uses_fact(reply: str, item: TwoSessions) -> bool:
    """The reply says one of the fact's words that the session 2 message did not already say."""
    later = item.later.lower()
    words = [w for w in item.uses if not re.search(rf"\b{re.escape(w)}\b", later)]
    return any(re.search(rf"\b{re.escape(w)}\b", reply.lower()) for w in words)


class RecordingLLM:
    """The real chat model, recording each prompt (to see what was recalled into it)."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.prompts: list[list[ChatMessage]] = []

    def stream(
        self, messages: Sequence[ChatMessage], stop: threading.Event, options: GenerationOptions | None = None
    ) -> Iterator[str]:
        self.prompts.append(list(messages))
        return self.inner.stream(messages, stop, options)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def warm_prefix(self, messages: Sequence[ChatMessage]) -> int:
        return self.inner.warm_prefix(messages)

    def warmup(self) -> None:
        self.inner.warmup()


class _Quiet:
    async def emit(self, event: object) -> None:
        return None

    async def flush(self) -> None:
        return None


async def run(settings: Settings, items: Sequence[TwoSessions]) -> dict[str, Any]:
    from backend.core.metrics import Metrics
    from backend.engines.model_service import ModelService
    from backend.main import open_store
    from backend.pipeline.turn_pipeline import TurnPipeline
    from backend.pipeline.turn_types import TurnInput, TurnState
    from backend.store.memories import memory_scope

    models = ModelService(settings)
    await asyncio.to_thread(models.load_all)
    recorder = RecordingLLM(models.llm)
    models._llm = recorder  # every turn's prompt is recorded
    store = await asyncio.to_thread(open_store, settings)
    pipeline = TurnPipeline(models, store, settings, Metrics())
    results: list[dict[str, Any]] = []
    try:
        for n, item in enumerate(items):
            user = f"eval-{n}"  # memory across sessions needs a user id (without one it stays in the session)
            scope = memory_scope(None, user, "")

            async def turn(text: str, remember: bool, user: str = user) -> tuple[str, list[ChatMessage]]:
                session = (await store.create_session(user_id=user)).id
                t = TurnInput(f"t{len(recorder.prompts)}", session, time.perf_counter(), text=text, speak=False)
                t.memory_scope = memory_scope(None, user, session) if remember else None
                result = await pipeline.run(t, _Quiet(), TurnState(t.turn_id))
                await pipeline.follow_ups.idle()
                return result.reply, recorder.prompts[-1]

            await turn(item.said, True)
            kept = [m.text for m in (await store.list_memories(scope))[0]]
            with_memory, prompt = await turn(item.later, True)
            guidance = prompt[-2].content
            without, _ = await turn(item.later, False)
            other = items[(n + 1) % len(items)].later  # an unrelated message, same user: is the fact kept out?
            unrelated, unrelated_prompt = await turn(other, True)
            results.append(
                {
                    "said": item.said,
                    "later": item.later,
                    "kept": kept,
                    "recalled": MEMORY_INTRO in guidance and item.said.lower().rstrip(".") in guidance.lower(),
                    "guidance": guidance,
                    "with_memory": with_memory,
                    "without_memory": without,
                    "used_with_memory": uses_fact(with_memory, item),
                    "used_without_memory": uses_fact(without, item),
                    "unrelated_message": other,
                    "recalled_for_unrelated": item.said.lower().rstrip(".") in unrelated_prompt[-2].content.lower(),
                    "unrelated_reply": unrelated,
                }
            )
            print(f"{n + 1}/{len(items)} recalled={results[-1]['recalled']} used={results[-1]['used_with_memory']}")
    finally:
        pipeline.close()
        store.close()
    n = max(1, len(results))
    return {
        "conversations": len(results),
        "kept_rate": sum(bool(r["kept"]) for r in results) / n,
        "recall_rate": sum(bool(r["recalled"]) for r in results) / n,
        "use_rate_with_memory": sum(bool(r["used_with_memory"]) for r in results) / n,
        "use_rate_without_memory": sum(bool(r["used_without_memory"]) for r in results) / n,
        "false_recall_rate": sum(bool(r["recalled_for_unrelated"]) for r in results) / n,
        "results": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="How often session 2's reply uses a fact from session 1.")
    p.add_argument("--adapter", type=Path, default=None, help="adapter folder (default: llm.adapter_path)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("eval_memory.json"))
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    settings = Settings()
    adapter = resolve_path(args.adapter or settings.llm.adapter_path or "models/claritymentor-lora")
    settings.llm = settings.llm.model_copy(update={"adapter_path": adapter})
    settings.llm.warm_between_turns = False
    with tempfile.TemporaryDirectory() as tmp:
        settings.database.url = f"sqlite:///{tmp}/memory-eval.db"
        report = asyncio.run(run(settings, MEMORY_SET[: args.limit]))
    report = {"adapter_dir": str(adapter), "memory": settings.memory.model_dump(), **report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = {k: v for k, v in report.items() if k.endswith("_rate") or k.endswith("memory")}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
