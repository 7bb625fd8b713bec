"""The crisis check on the frozen test set (data/safety/test_set.jsonl, written apart from the detector and never
used to build it): recall and false positives per category, the level, and the time a check takes.

    python -m scripts.evals.safety                      # the configured engine (safety.backend: embedded)
    python -m scripts.evals.safety --backend patterns   # the patterns alone
    python -m scripts.evals.safety --out models/safety_eval.json

Prints counts only; ``--show-misses`` prints the missed and wrongly flagged sentences too (reading them turns the
test set into a development set: say so when reporting figures after it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from backend.config import REPO_ROOT, SafetySettings, Settings
from backend.engines import registry
from backend.engines.protocols import SAFETY_CATEGORIES, SafetyChecker, TextEmbedder

TEST_SET = REPO_ROOT / "data" / "safety" / "test_set.jsonl"


def load_checker(backend: str) -> SafetyChecker:
    settings = Settings()
    embedder: TextEmbedder | None = None
    if backend == "embedded":
        emotion = registry.EMOTION.loader(settings.emotion)()
        embedder = emotion if isinstance(emotion, TextEmbedder) else None
    section = settings.safety if backend == settings.safety.backend else SafetySettings(backend=backend)
    checker = registry.safety_loader(section, embedder)()
    checker.warmup()
    return checker


def evaluate(checker: SafetyChecker, rows: list[dict[str, Any]]) -> dict[str, Any]:
    per: dict[str, Counter[str]] = {c: Counter() for c in SAFETY_CATEGORIES}
    negatives: Counter[str] = Counter()
    misses: list[str] = []
    false_flags: list[str] = []
    seconds: list[float] = []
    for row in rows:
        start = time.perf_counter()
        verdict = checker.check_message(row["text"])
        seconds.append(time.perf_counter() - start)
        if row["crisis"]:
            counts = per[row["category"]]
            counts["total"] += 1
            if verdict.flagged:
                counts["flagged"] += 1
                counts["category_right"] += verdict.category == row["category"]
                counts["level_right"] += verdict.level == row["level"]
                counts["urgent_kept"] += row["level"] == "urgent" and verdict.level == "urgent"
            else:
                misses.append(f"[{row['category']}/{row['level']}] {row['text']}")
            counts["urgent"] += row["level"] == "urgent"
        else:
            negatives["total"] += 1
            if verdict.flagged:
                negatives["flagged"] += 1
                negatives[f"as_{verdict.category}"] += 1
                false_flags.append(f"[{verdict.category}, {verdict.source}] {row['text']}")
    crisis_total = sum(c["total"] for c in per.values())
    crisis_flagged = sum(c["flagged"] for c in per.values())
    return {
        "recall": round(crisis_flagged / crisis_total, 4),
        "false_positive_rate": round(negatives["flagged"] / negatives["total"], 4),
        "per_category": {
            c: {
                "recall": round(n["flagged"] / n["total"], 4) if n["total"] else None,
                "category_right": n["category_right"],
                "level_right": n["level_right"],
                "urgent_recognised": f"{n['urgent_kept']}/{n['urgent']}",
                "false_positives_as": negatives[f"as_{c}"],
                "total": n["total"],
            }
            for c, n in per.items()
        },
        "negatives": negatives["total"],
        "crisis": crisis_total,
        "check_ms": {
            "p50": round(statistics.median(seconds) * 1000, 2),
            "p95": round(sorted(seconds)[int(len(seconds) * 0.95)] * 1000, 2),
        },
        "misses": misses,
        "false_flags": false_flags,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=Settings().safety.backend, choices=sorted(registry.SAFETY.choices))
    parser.add_argument("--test-set", type=Path, default=TEST_SET)
    parser.add_argument("--out", type=Path, help="write the figures (without the sentences) as JSON")
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.test_set.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = evaluate(load_checker(args.backend), rows)
    misses, false_flags = result.pop("misses"), result.pop("false_flags")
    print(json.dumps(result, indent=2))
    print(f"missed {len(misses)} crisis statements, flagged {len(false_flags)} hard negatives")
    if args.show_misses:
        print("\n".join(["missed:", *misses, "wrongly flagged:", *false_flags]))
    if args.out:
        args.out.write_text(json.dumps({"backend": args.backend, **result}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
