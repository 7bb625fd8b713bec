"""Do the replies fit the person? Fresh sentences (data/mentor/test.jsonl, never read by training), each
answered as the server answers a first turn: the real emotion detector labels the text, the guidance falls back
to neutral below ``emotion.min_confidence``, the default persona's prompt, greedy generation, and the spoken
reply's opening clause (pipeline.opening_clause; CM_PIPELINE__OPENING_CLAUSE=false for the LLM's own words).
Every reply is judged by the rubric (scripts/common/mentor_rubric.py); the rubric's agreement with a person's reading
is measured on the labelled replies in data/mentor/test_labels.jsonl. Used by ``python -m scripts.evals.mentor --fit``.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.config import REPO_ROOT, LLMSettings, Settings
from backend.mentor.prompt_builder import guidance_emotion
from backend.mentor.speakable import clean_for_speech
from scripts.common.figures import percentile
from scripts.common.mentor_data import Exchange, word_count
from scripts.common.mentor_rubric import Verdict, agreement, distinct_opener_share, is_shaped, judge

TEST_SET = REPO_ROOT / "data/mentor/test.jsonl"
LABELS = REPO_ROOT / "data/mentor/test_labels.jsonl"
PERSON_READING = REPO_ROOT / "data/mentor/test_person_reading.jsonl"


@dataclass(frozen=True)
class Sentence:
    id: str
    text: str
    emotion: str  # the feeling a person reads in it (the detector's label may differ)


@dataclass(frozen=True)
class Detected:
    label: str
    confidence: float
    guidance: str  # what the model is told (neutral below emotion.min_confidence)


def load_sentences(path: Path = TEST_SET) -> list[Sentence]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Sentence(r["id"], r["text"], r["emotion"]) for r in rows]


def detect_emotions(sentences: Sequence[Sentence], settings: Settings) -> list[Detected]:
    """The server's emotion engine (by config) on each sentence's text, and the guidance it leads to."""
    from backend.engines.registry import EMOTION

    detector = EMOTION.loader(settings.emotion)()
    out: list[Detected] = []
    for s in sentences:
        result = detector.detect(s.text, None)
        guidance = guidance_emotion(result, settings.emotion.min_confidence)
        out.append(Detected(result.label, result.confidence, guidance))
    return out


TIMING_KEYS = ("repetition_penalty", "mean_seconds", "first_words_p50", "first_words_p95")
FIRST_WORDS = 3  # the server speaks once the first clause or the first three words are there


def stream_reply(chat: Any, messages: Any, opener: str = "") -> tuple[str, float, float]:
    """The streamed reply (after ``opener``, its opening clause, when given), the seconds until the LLM's first
    FIRST_WORDS words and the seconds for all of it."""
    from backend.engines.protocols import GenerationOptions
    from backend.mentor.openers import continue_after

    started = time.perf_counter()
    first: float | None = None
    text = ""
    for piece in chat.stream(messages, threading.Event(), GenerationOptions(reply_prefix=opener)):
        text += piece
        if first is None and len(text.split()) >= FIRST_WORDS:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    return " ".join(continue_after(opener, text).split()), total if first is None else first, total


def generate_replies(
    llm: LLMSettings, settings: Settings, sentences: Sequence[Sentence], detected: Sequence[Detected]
) -> tuple[list[str], list[float], list[float]]:
    """A first-turn reply to each sentence, through the server's prompt code, greedy (server settings),
    streamed as the server streams it: replies, seconds to the first words, seconds in all."""
    from backend.config import resolve_path
    from backend.engines.llm.transformers import load as load_llm
    from backend.mentor.openers import choose_opener, load_openers
    from backend.mentor.personas import load_personas
    from backend.mentor.prompt_builder import load_mentor_prompt
    from scripts.training.train_lora import PromptRenderer

    chat = load_llm(llm)
    renderer = PromptRenderer(chat.tokenizer, llm, load_mentor_prompt(settings.mentor), load_personas(settings.mentor))
    openers = load_openers(resolve_path(settings.mentor.openers_path)) if settings.pipeline.opening_clause else {}
    replies: list[str] = []
    first_words: list[float] = []
    seconds: list[float] = []
    for s, d in zip(sentences, detected, strict=True):
        opener = choose_opener(openers, d.guidance, s.text) if openers else ""  # as the server speaks it
        reply, first, total = stream_reply(
            chat, renderer.messages(Exchange(s.id, 0, (), s.text, d.guidance, "")), opener
        )
        replies.append(reply)
        first_words.append(first)
        seconds.append(total)
    del chat
    gc.collect()
    return replies, first_words, seconds


def verdicts(sentences: Sequence[Sentence], replies: Sequence[str]) -> list[Verdict]:
    """Each reply judged against the feeling a person reads in its sentence (is it appropriate?)."""
    return [judge(r, s.emotion, [s.text]) for s, r in zip(sentences, replies, strict=True)]


def given_verdicts(
    sentences: Sequence[Sentence], detected: Sequence[Detected], replies: Sequence[str]
) -> list[Verdict]:
    """Each reply judged against the emotion the model was given (does its opener contradict it?)."""
    return [judge(r, d.guidance, [s.text]) for s, d, r in zip(sentences, detected, replies, strict=True)]


def fit_figures(
    replies: Sequence[str], judged: Sequence[Verdict], given: Sequence[Verdict], seconds: Sequence[float]
) -> dict[str, float]:
    """The issue's figures for one model's replies: shares over the test sentences, counts of failures."""
    n = max(1, len(judged))
    return {
        "appropriate": sum(v.appropriate for v in judged) / n,
        "acknowledges_feeling": sum(v.acknowledges for v in judged) / n,
        "contradicting_feeling_words": float(sum(len(v.contradicts) for v in given)),
        "contradicting_true_feeling": float(sum(len(v.contradicts) for v in judged)),
        "blame": float(sum(len(v.blames) for v in judged)),
        "invented_details": float(sum(bool(v.invented) for v in judged)),
        "unfounded_statements": float(sum(bool(v.unfounded) for v in judged)),
        "one_question": sum(v.questions == 1 for v in judged) / n,
        "distinct_openers": distinct_opener_share(replies),
        "speakable": sum(v.speakable for v in judged) / n,
        "shaped": sum(is_shaped(r) for r in replies) / n,
        "mean_words": sum(word_count(clean_for_speech(r)) for r in replies) / n,
        "mean_seconds": sum(seconds) / max(1, len(seconds)),
    }


def shape_study(replies: Sequence[str], judged: Sequence[Verdict]) -> dict[str, float]:
    """Appropriate share of replies shaped as acknowledgement + one question vs the rest (pooled over models)."""
    shaped = [v.appropriate for r, v in zip(replies, judged, strict=True) if is_shaped(r)]
    other = [v.appropriate for r, v in zip(replies, judged, strict=True) if not is_shaped(r)]
    return {
        "shaped_n": float(len(shaped)),
        "shaped_appropriate": sum(shaped) / max(1, len(shaped)),
        "other_n": float(len(other)),
        "other_appropriate": sum(other) / max(1, len(other)),
    }


def label_agreement(path: Path = LABELS) -> dict[str, Any]:
    """The rubric against a person's labels: rows ``{"user", "emotion", "reply", "appropriate", "note"}`` (and
    ``"set"``: "tuning" for the replies the rubric's thresholds were chosen on, "check" for those labelled after;
    ``"model"``: which model wrote the reply)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rubric = [judge(r["reply"], r["emotion"], [r["user"]]).appropriate for r in rows]
    person = [bool(r["appropriate"]) for r in rows]
    figures: dict[str, Any] = dict(agreement(rubric, person))
    figures["person_appropriate"] = sum(person) / len(person)
    figures["rubric_appropriate"] = sum(rubric) / len(rubric)
    for name in sorted({str(r.get("set", "")) for r in rows} - {""}):
        chosen = [i for i, r in enumerate(rows) if r.get("set") == name]
        figures[f"agreement_{name}"] = agreement([rubric[i] for i in chosen], [person[i] for i in chosen])["agreement"]
    figures["person_by_model"] = {
        model: sum(p for r, p in zip(rows, person, strict=True) if r.get("model") == model)
        / sum(1 for r in rows if r.get("model") == model)
        for model in sorted({str(r.get("model", "")) for r in rows} - {""})
    }
    figures["disagreements"] = [
        {"reply": r["reply"], "person": p, "rubric": q} for r, p, q in zip(rows, person, rubric, strict=True) if p != q
    ]
    return figures


def person_reading(report: dict[str, Any], path: Path = PERSON_READING) -> dict[str, float]:
    """Per model, the share of its test replies a person read as appropriate (rows ``{"id", "model", "reply",
    "appropriate"}``), for the models whose every reply in ``report`` was read (the exact same text)."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    shares: dict[str, float] = {}
    for name, figures in report["models"].items():
        read = {r["reply"]: bool(r["appropriate"]) for r in rows if r["model"] == name}
        replies = figures["replies"]
        if replies and all(reply in read for reply in replies):
            shares[name] = sum(read[reply] for reply in replies) / len(replies)
    return shares


def evaluate_fit(
    models: dict[str, LLMSettings],
    settings: Settings,
    sentences: Sequence[Sentence],
    reuse: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every model on the same sentences and detected emotions; figures, replies and the shape study. A model
    of ``reuse`` (an earlier report on the same sentences with the same detected emotions) is not run again."""
    detected = detect_emotions(sentences, settings)
    report: dict[str, Any] = {
        "sentences": len(sentences),
        "detector_agrees_with_label": sum(d.label == s.emotion for s, d in zip(sentences, detected, strict=True))
        / max(1, len(sentences)),
        "items": [
            {"id": s.id, "user": s.text, "label": s.emotion, "detected": d.label, "guidance": d.guidance}
            for s, d in zip(sentences, detected, strict=True)
        ],
        "models": {},
    }
    pooled_replies: list[str] = []
    pooled_verdicts: list[Verdict] = []
    earlier = reuse["models"] if reuse is not None and reuse.get("items") == report["items"] else {}
    if reuse is not None and not earlier:
        raise ValueError("the report to reuse covers other sentences or other detected emotions")
    for name, llm in models.items():
        if name in earlier:  # the replies and timings of the earlier run, judged again by today's rubric
            replies, seconds = list(earlier[name]["replies"]), list[float]()
            timings = {k: earlier[name][k] for k in TIMING_KEYS if k in earlier[name]}
        else:
            replies, first_words, seconds = generate_replies(llm, settings, sentences, detected)
            timings = {
                "repetition_penalty": llm.repetition_penalty,
                "first_words_p50": percentile(first_words, 50, empty=0.0),
                "first_words_p95": percentile(first_words, 95, empty=0.0),
            }
        judged = verdicts(sentences, replies)
        figures = fit_figures(replies, judged, given_verdicts(sentences, detected, replies), seconds)
        pooled_replies += replies
        pooled_verdicts += judged
        report["models"][name] = {
            **figures,
            **timings,
            "replies": replies,
            "reasons": [list(v.reasons) for v in judged],
        }
    report["shape_study"] = shape_study(pooled_replies, pooled_verdicts)
    for name, share in person_reading(report).items():
        report["models"][name]["person_appropriate"] = share
    return report


FIT_ROWS = (
    ("appropriate", "replies judged appropriate (rubric)", "pct"),
    ("person_appropriate", "replies a person read as appropriate", "pct"),
    ("acknowledges_feeling", "opener names the sentence's feeling", "pct"),
    ("contradicting_feeling_words", "feeling words contradicting the detected emotion", "count"),
    ("contradicting_true_feeling", "feeling words contradicting the sentence's feeling", "count"),
    ("blame", "blame phrases", "count"),
    ("invented_details", "replies inventing people, times or names", "count"),
    ("unfounded_statements", "replies with a statement built of words the user never said", "count"),
    ("one_question", "exactly one question", "pct"),
    ("distinct_openers", "distinct openers (first three words)", "pct"),
    ("speakable", "speakable (no markup, 1-3 sentences)", "pct"),
    ("shaped", "shaped: acknowledgement + one question", "pct"),
    ("mean_words", "mean words", "num"),
    ("repetition_penalty", "repetition penalty (generation)", "num"),
    ("first_words_p50", "seconds to the first three words, p50 (LLM only)", "num"),
    ("first_words_p95", "seconds to the first three words, p95 (LLM only)", "num"),
    ("mean_seconds", "mean generation seconds per reply", "num"),
)


def fit_table(report: dict[str, Any]) -> str:
    """The figures side by side, one column per model, as markdown."""
    names = list(report["models"])
    lines = [
        f"| measure ({report['sentences']} fresh sentences) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key, label, kind in FIT_ROWS:
        if all(key not in report["models"][name] for name in names):
            continue  # a figure this report does not have
        cells = []
        for name in names:
            if key not in report["models"][name]:
                cells.append("n/a")
                continue
            value = float(report["models"][name][key])
            cells.append(f"{value:.0%}" if kind == "pct" else f"{value:.0f}" if kind == "count" else f"{value:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
