#!/usr/bin/env python3
"""Reply quality of the LLM engines on the validation split: transformers vs CTranslate2 (greedy, server prompts).

A runtime switch changes replies (CTranslate2's repetition penalty counts only generated tokens, transformers'
also the prompt's), so this compares what matters instead of word parity: speakability figures (markup, empty,
length, 1-3 sentences, a question) from scripts/evals/mentor.py, reference-reply word overlap, and time per reply.

    python -m scripts.evals.llm_engines --penalties 1.0,1.1,1.15 --out bench_out/engines.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from backend.config import REPO_ROOT, LLMSettings, Settings
from backend.engines.protocols import ChatModel
from backend.mentor.prompt_builder import load_mentor_prompt
from scripts.common.mentor_data import Exchange, exchanges, load_conversations
from scripts.evals.mentor import reply_figures
from scripts.training.train_lora import PromptRenderer


def overlap(reply: str, reference: str) -> float:
    """Share of the reference's content words (4+ letters) that the reply uses."""
    words = set(re.findall(r"[a-z']{4,}", reference.lower()))
    return len(words & set(re.findall(r"[a-z']{4,}", reply.lower()))) / max(1, len(words))


def run(chat: ChatModel, renderer: PromptRenderer, val: list[Exchange]) -> dict[str, Any]:
    replies, seconds = [], []
    for ex in val:
        started = time.perf_counter()
        replies.append("".join(chat.stream(renderer.messages(ex), __import__("threading").Event())))
        seconds.append(time.perf_counter() - started)
    figures: dict[str, Any] = reply_figures(replies, seconds)
    figures["reference_overlap"] = sum(overlap(r, e.reply) for r, e in zip(replies, val, strict=True)) / len(val)
    figures["replies"] = replies
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--val", type=Path, default=REPO_ROOT / "data/mentor/val.jsonl")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--penalties", default="1.15", help="CTranslate2 repetition penalties to try")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench_out" / "engines.json")
    args = p.parse_args(argv)
    from backend.engines.llm.ctranslate2 import load as load_ct2
    from backend.engines.llm.transformers import load as load_transformers

    settings = Settings()
    val = list(exchanges(load_conversations(args.val)))[: args.limit]
    base = settings.llm.model_dump(exclude=set(settings.llm.model_extra or {}))
    results: dict[str, Any] = {}
    tf = load_transformers(LLMSettings.model_validate({**base, "backend": "transformers"}))
    renderer = PromptRenderer(tf.tokenizer, settings.llm, load_mentor_prompt(settings.mentor))
    results["transformers"] = run(tf, renderer, val)
    del tf
    ct2 = load_ct2(LLMSettings.model_validate({**base, "backend": "ctranslate2"}))
    for penalty in [float(x) for x in args.penalties.split(",")]:
        ct2.settings = LLMSettings.model_validate({**base, "backend": "ctranslate2", "repetition_penalty": penalty})
        results[f"ctranslate2 rp={penalty}"] = run(ct2, renderer, val)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"val": len(val), "results": results}, indent=1) + "\n")
    keys = [k for k, v in results["transformers"].items() if isinstance(v, float)]
    print(f"{'measure':<22}" + "".join(f"{name:>24}" for name in results))
    for k in keys:
        print(f"{k:<22}" + "".join(f"{r[k]:>24.3f}" for r in results.values()))
    same = {
        n: sum(a == b for a, b in zip(results["transformers"]["replies"], r["replies"], strict=True))
        for n, r in results.items()
    }
    print("replies identical to transformers':", same)
    return 0


if __name__ == "__main__":
    sys.exit(main())
