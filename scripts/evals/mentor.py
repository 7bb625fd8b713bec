"""Base model vs base + mentor LoRA adapter on the validation split of data/mentor.

Measures, for each model: the loss and perplexity of the reference replies (reply tokens only), and for each
val user turn a reply generated exactly as the server does (``load_llm`` + ``build_messages`` + greedy
settings from ``Settings().llm``), judged on speakability: share with markdown or emoji, share empty after
speech cleaning, mean words, share of 1-3 sentences, share asking a question.

    python -m scripts.evals.mentor --update-card          # full val split, writes into the adapter folder
    python -m scripts.evals.mentor --adapter /tmp/lora --limit 3 --out /tmp/eval.json
    python -m scripts.evals.mentor --fit --compare round-1=/tmp/r1/models/claritymentor-lora --update-card

``--fit`` answers the fresh test sentences (data/mentor/test.jsonl, never read by training) with the base
model, each ``--compare`` adapter and this one, and judges the replies by the rubric (scripts/common/reply_fit.py,
scripts/common/mentor_rubric.py): appropriate share, contradicting feeling words, blame, invented details, one
question, distinct openers; writes eval_fit.json. The round-1 adapter is in git:
``git archive a8f6a3b models/claritymentor-lora | tar -x -C /tmp/r1``.

Writes the JSON report (--out), a side-by-side markdown sample of replies (--samples) and, with
--update-card, eval.json + samples.md + README.md in the adapter folder. Blocking and CPU heavy.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.config import REPO_ROOT, EmotionSettings, LLMSettings, Settings, resolve_path
from backend.mentor.speakable import clean_for_speech
from scripts.common.mentor_data import (
    Exchange,
    asks_question,
    exchanges,
    has_markdown_or_emoji,
    load_conversations,
    sentence_count,
    word_count,
)

MIN_WORDS, MAX_WORDS = 10, 45  # the dataset's reply length range


def reply_figures(replies: Sequence[str], seconds: Sequence[float]) -> dict[str, float]:
    """Speakability of generated replies (raw text for markup; speech-cleaned text for the rest)."""
    n = max(1, len(replies))
    cleaned = [clean_for_speech(r) for r in replies]
    return {
        "markdown_or_emoji": sum(has_markdown_or_emoji(r) for r in replies) / n,
        "empty": sum(not c for c in cleaned) / n,
        "mean_words": sum(word_count(c) for c in cleaned) / n,
        "within_word_range": sum(MIN_WORDS <= word_count(c) <= MAX_WORDS for c in cleaned) / n,
        "one_to_three_sentences": sum(1 <= sentence_count(c) <= 3 for c in cleaned) / n,
        "asks_question": sum(asks_question(c) for c in cleaned) / n,
        "mean_seconds": sum(seconds) / max(1, len(seconds)),
    }


def evaluate(llm: LLMSettings, settings: Settings, loss_set: list[Exchange], val: list[Exchange]) -> dict[str, Any]:
    """Loss on the reference replies of ``loss_set`` and a generated reply for each user turn of ``val``."""
    from backend.engines.llm.transformers import load as load_llm
    from backend.mentor.personas import load_personas
    from backend.mentor.prompt_builder import load_mentor_prompt
    from scripts.training.train_lora import PromptRenderer, mean_reply_loss

    chat = load_llm(llm)
    tok = chat.tokenizer
    renderer = PromptRenderer(tok, llm, load_mentor_prompt(settings.mentor), load_personas(settings.mentor))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    loss = mean_reply_loss(chat.model, [renderer.encode(e) for e in loss_set], pad)
    replies: list[str] = []
    seconds: list[float] = []
    for ex in val:
        started = time.perf_counter()
        replies.append(chat.generate(renderer.messages(ex)))
        seconds.append(time.perf_counter() - started)
    figures: dict[str, Any] = {
        "adapter_loaded": chat.adapter_loaded,
        "val_reply_loss": loss,
        "val_reply_ppl": math.exp(loss),
        **reply_figures(replies, seconds),
        "replies": replies,
    }
    del chat
    gc.collect()
    return figures


def samples_markdown(report: dict[str, Any], val: list[Exchange]) -> str:
    lines = ["# Mentor replies: base vs adapter (validation split, greedy, server settings)", ""]
    base, tuned = report["base"]["replies"], report["adapter"]["replies"]
    for i, (ex, b, t) in enumerate(zip(val, base, tuned, strict=False), start=1):
        lines += [
            f"## {i}. {ex.conversation_id} turn {ex.index + 1} ({ex.emotion})",
            "",
            f"- **User:** {ex.user_text}",
            f"- **Reference:** {ex.reply}",
            f"- **Base:** {' '.join(b.split()) or '(empty)'}",
            f"- **Adapter:** {' '.join(t.split()) or '(empty)'}",
            "",
        ]
    return "\n".join(lines)


def print_table(report: dict[str, Any]) -> None:
    keys = [k for k, v in report["base"].items() if isinstance(v, float)]
    print(f"{'measure':<26}{'base':>12}{'adapter':>12}")
    for k in keys:
        print(f"{k:<26}{report['base'][k]:>12.3f}{report['adapter'][k]:>12.3f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate the ClarityMentor LoRA adapter against the base model.")
    p.add_argument("--val", type=Path, default=REPO_ROOT / "data/mentor/val.jsonl")
    p.add_argument("--adapter", type=Path, default=None, help="adapter folder (default: llm.adapter_path)")
    p.add_argument("--limit", type=int, default=None, help="generate for the first N val user turns only")
    p.add_argument("--loss-limit", type=int, default=None, help="loss on the first N val exchanges only")
    p.add_argument(
        "--base-from", type=Path, default=None, help="reuse the base figures of an earlier report (same slice)"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON report (default: <adapter>/eval.json)")
    p.add_argument("--samples", type=Path, default=None, help="markdown (default: next to --out)")
    p.add_argument("--base-only", action="store_true", help="evaluate the base model only (for --base-from)")
    p.add_argument("--update-card", action="store_true", help="write eval.json, samples.md, README.md")
    p.add_argument(
        "--fit",
        action="store_true",
        help="do replies fit? base, each --compare adapter and this adapter on the fresh test sentences",
    )
    p.add_argument("--update-readme", action="store_true", help="with --fit: write the table into docs/MODEL.md")
    p.add_argument(
        "--emotion-examples-file-only",
        action="store_true",
        help="with --fit: detect emotions with config/emotion_examples.yaml alone (the detector before the "
        "dataset's examples were added)",
    )
    p.add_argument("--no-base", action="store_true", help="with --fit: leave the base model out")
    p.add_argument("--reuse", type=Path, default=None, help="with --fit: take the models of an earlier report")
    p.add_argument("--test", type=Path, default=None, help="test sentences for --fit (default: data/mentor/test.jsonl)")
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another adapter for --fit, e.g. round-1=/tmp/round1/models/claritymentor-lora (repeatable)",
    )
    return p.parse_args(argv)


def run_fit(args: argparse.Namespace, settings: Settings, adapter: Path) -> int:
    """The reply-fit figures (scripts/common/reply_fit.py) side by side; writes eval_fit.json (and the card)."""
    from scripts.common.model_card import write_card
    from scripts.common.reply_fit import LABELS, TEST_SET, evaluate_fit, fit_table, label_agreement, load_sentences

    if args.emotion_examples_file_only:
        emotion = EmotionSettings.model_validate({**settings.emotion.model_dump(), "extra_examples_path": None})
        settings = settings.model_copy(update={"emotion": emotion})
    s = settings.llm
    models = {"base": s.model_copy(update={"adapter_path": None})}
    if args.no_base:
        models = {}
    for spec in args.compare:
        name, sep, folder = spec.partition("=")
        if not sep or not (Path(folder) / "adapter_config.json").is_file():
            print(f"--compare {spec!r}: expected NAME=DIR with an adapter in DIR", file=sys.stderr)
            return 2
        models[name] = s.model_copy(update={"adapter_path": str(Path(folder).resolve())})
    models["this adapter"] = s.model_copy(update={"adapter_path": str(adapter)})
    sentences = load_sentences(args.test or TEST_SET)[: args.limit]
    started = time.perf_counter()
    reuse = json.loads(args.reuse.read_text(encoding="utf-8")) if args.reuse else None
    report = evaluate_fit(models, settings, sentences, reuse)
    if LABELS.is_file():
        report["rubric_vs_person"] = label_agreement()
    report["seconds"] = round(time.perf_counter() - started, 1)
    out = args.out or adapter / "eval_fit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.update_card and out.resolve() != (adapter / "eval_fit.json").resolve():
        (adapter / "eval_fit.json").write_text(out.read_text(encoding="utf-8"), encoding="utf-8")
    if args.update_card:
        write_card(adapter)
    if args.update_readme:
        from scripts.common.model_card import fit_section
        from scripts.common.readme_sections import update_readme

        update_readme("eval_mentor:fit", fit_section(report))
    print(fit_table(report))
    agree = report.get("rubric_vs_person", {"n": 0, "agreement": 0.0, "kappa": 0.0})
    print(
        f"rubric vs a person on {agree['n']:.0f} labelled replies: agreement {agree['agreement']:.0%}, "
        f"kappa {agree['kappa']:.2f}"
    )
    study = report["shape_study"]
    print(
        f"shape study: acknowledgement + one question {study['shaped_appropriate']:.0%} appropriate "
        f"(n={study['shaped_n']:.0f}) vs other shapes {study['other_appropriate']:.0%} (n={study['other_n']:.0f})"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from scripts.common.model_card import write_card

    settings = Settings()
    adapter = resolve_path(args.adapter or settings.llm.adapter_path or "models/claritymentor-lora")
    if not args.base_only and not (adapter / "adapter_config.json").is_file():
        print(f"no adapter in {adapter}", file=sys.stderr)
        return 2
    if args.fit:
        return run_fit(args, settings, adapter)
    all_val = list(exchanges(load_conversations(args.val)))
    val, loss_set = all_val[: args.limit], all_val[: args.loss_limit]
    s = settings.llm
    base_llm = s.model_copy(update={"adapter_path": None})
    if args.base_from is not None:
        earlier = json.loads(args.base_from.read_text(encoding="utf-8"))
        if (earlier["val_exchanges"], earlier["generated"]) != (len(loss_set), len(val)):
            print("--base-from: that report covers another slice of the val split", file=sys.stderr)
            return 2
        base = earlier["base"]
    else:
        base = evaluate(base_llm, settings, loss_set, val)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "val_file": str(args.val),
        "adapter_dir": str(adapter),
        "val_exchanges": len(loss_set),
        "generated": len(val),
        "generation": (
            f"greedy, max_new_tokens {s.max_new_tokens}, repetition_penalty {s.repetition_penalty}"
            if s.temperature <= 0
            else f"temperature {s.temperature}, top_p {s.top_p}, max_new_tokens {s.max_new_tokens}"
        ),
        "base": base,
    }
    if args.base_only:
        out = args.out or Path("eval_base.json")
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return 0
    report["adapter"] = evaluate(s.model_copy(update={"adapter_path": adapter}), settings, loss_set, val)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["replies"] = [
        {"id": e.conversation_id, "turn": e.index, "emotion": e.emotion, "user": e.user_text} for e in val
    ]
    out = args.out or adapter / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    samples = args.samples or out.with_name("samples.md")
    samples.write_text(samples_markdown(report, val), encoding="utf-8")
    if args.update_card:
        if out.resolve() != (adapter / "eval.json").resolve():
            (adapter / "eval.json").write_text(out.read_text(encoding="utf-8"), encoding="utf-8")
            (adapter / "samples.md").write_text(samples.read_text(encoding="utf-8"), encoding="utf-8")
        write_card(adapter)
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
