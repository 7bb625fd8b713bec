"""Turn LLM text into something a TTS voice should say: no markdown, emoji or stage directions.

Also the sentence-boundary rules shared by the streaming chunker and ``trim_reply``. Pure functions.
"""

from __future__ import annotations

import re

# Words that end with a period without ending the sentence (compared lowercased, without the period).
_ABBREVIATION_WORDS = "mr mrs ms dr prof sr jr st mt vs etc approx dept est inc ltd co jan feb mar apr jun jul"
ABBREVIATIONS = frozenset(f"{_ABBREVIATION_WORDS} aug sep sept oct nov dec no fig min max ca cf al".split(" "))
_DOTTED = re.compile(r"(?:[a-z]\.)+[a-z]")  # e.g, i.e, a.m, u.s (the final period is not included)

# A run of . ! ? (plus closing quotes, brackets or a closing asterisk) followed by whitespace, or a newline.
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]*]*(?=\s)|\n")
# A clause boundary: , ; : before whitespace, a spaced dash, or an em dash.
_CLAUSE_END = re.compile(r"[,;:](?=\s)|\s[-–—]+(?=\s)|—")

_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # emoticons, pictographs, transport, flags, supplemental symbols
    "\U0001fb00-\U0001fbff"
    "\u2300-\u23ff"  # miscellaneous technical (watch, hourglass ...)
    "\u2460-\u24ff"  # enclosed alphanumerics
    "\u25a0-\u27bf"  # geometric shapes, miscellaneous symbols, dingbats
    "\u2900-\u297f\u2b00-\u2bff"  # arrows and stars
    "\u3030\u303d\u3297\u3299"
    "\ufe00-\ufe0f\u200d\u20e3"  # variation selectors, zero-width joiner, keycap
    "\U000e0020-\U000e007f"  # tag characters (subdivision flags)
    "]+"
)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_BOLD = re.compile(r"(\*\*|__)(.+?)\1", re.S)
_STAGE = re.compile(r"(?<![*\w])\*(?!\s)[^*\n]+?(?<!\s)\*(?![*\w])")  # *smiles warmly*
_BRACKET_STAGE = re.compile(r"\[(?:[^\]\n]{1,40})\]")  # [pause], [laughs]
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+", re.M)
_HEADING = re.compile(r"^\s*#{1,6}\s*", re.M)
_STRAY = re.compile(r"[*#`~_|<>]+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:])")
_REPEATED_PUNCT = re.compile(r"([,;:])\s*(?=[,.;:!?])")


def clean_for_speech(text: str) -> str:
    """Strip markdown, links (kept as their text), emoji, stage directions; collapse whitespace."""
    t = _LINK.sub(r"\1", text)
    t = _BOLD.sub(r"\2", t)
    t = _STAGE.sub(" ", t)
    t = _BRACKET_STAGE.sub(" ", t)
    t = _HEADING.sub("", t)
    t = _BULLET.sub("", t)
    t = _EMOJI.sub(" ", t)
    t = _STRAY.sub(" ", t)
    t = " ".join(t.split())
    t = _SPACE_BEFORE_PUNCT.sub(r"\1", t)
    t = _REPEATED_PUNCT.sub("", t)
    t = t.lstrip(" ,;:-–—").rstrip(" -–—")  # a trailing comma stays: it tells the voice more follows
    return t if any(c.isalnum() for c in t) else ""


def _is_abbreviation(text: str, dot_index: int) -> bool:
    """True when the period at ``dot_index`` ends an abbreviation such as Mr. or e.g."""
    words = text[:dot_index].split()
    if not words:
        return False
    word = words[-1].lstrip("(\"'“‘").lower()
    return word in ABBREVIATIONS or bool(_DOTTED.fullmatch(word))


def sentence_ends(text: str) -> list[int]:
    """End offsets of confirmed sentence boundaries in ``text`` (a boundary needs the whitespace after it)."""
    ends: list[int] = []
    for m in _SENTENCE_END.finditer(text):
        if m.group() == "\n":
            ends.append(m.start())
            continue
        if m.group().startswith(".") and m.group().rstrip("\"'”’)]*") == "." and _is_abbreviation(text, m.start()):
            continue
        ends.append(m.end())
    return ends


def clause_ends(text: str) -> list[int]:
    """End offsets of clause boundaries (, ; : or a dash) in ``text``."""
    return [m.end() for m in _CLAUSE_END.finditer(text)]


def word_count(text: str) -> int:
    return sum(1 for w in text.split() if any(c.isalnum() for c in w))


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (stripped, empty ones dropped)."""
    out: list[str] = []
    start = 0
    for end in [*sentence_ends(text), len(text)]:
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        start = end
    return out


def trim_reply(text: str, max_sentences: int = 3) -> str:
    """The first ``max_sentences`` sentences of ``text``, joined by single spaces."""
    return " ".join(split_sentences(text)[: max(0, max_sentences)])
