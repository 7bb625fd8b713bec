"""The crisis protocol's written replies (config/safety.yaml) and the reading of whether a person in safety mode
says they are safe. The one place where the mentor's words are the team's, not the model's (docs/SAFETY.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backend.core.exceptions import ConfigError
from backend.engines.protocols import SAFETY_CATEGORIES, SafetyCategory, SafetyLevel

_FIELDS = ("crisis_line", "emergency", "abuse_line")


@dataclass(frozen=True)
class Line:
    """One sentence of a written reply: as shown, and as spoken (numbers read digit by digit)."""

    text: str
    say: str


@dataclass(frozen=True)
class Locale:
    code: str
    name: str
    written: dict[str, str]  # crisis_line, emergency, abuse_line (when the locale has one)
    spoken: dict[str, str]

    def resources(self) -> dict[str, str | None]:
        """What the page shows when a turn is flagged."""
        return {
            "locale": self.code,
            "crisis_line": self.written["crisis_line"],
            "emergency": self.written["emergency"],
            "abuse_line": self.written.get("abuse_line"),
        }


class SafetyProtocol:
    """The written replies and the numbers per locale, read once from ``config/safety.yaml``."""

    def __init__(self, data: dict[str, Any], default_locale: str) -> None:
        self.locales: dict[str, Locale] = {}
        for code, entry in (data.get("locales") or {}).items():
            written = {k: str(entry[k]) for k in _FIELDS if entry.get(k)}
            if "crisis_line" not in written or "emergency" not in written:
                raise ConfigError(f"safety locale {code!r} needs crisis_line and emergency")
            spoken = {k: str((entry.get("say") or {}).get(k) or written[k]) for k in written}
            self.locales[str(code).upper()] = Locale(str(code), str(entry.get("name", code)), written, spoken)
        if "DEFAULT" not in self.locales:
            raise ConfigError("safety resources need a 'default' locale")
        self.aliases = {str(k).upper(): str(v).upper() for k, v in (data.get("aliases") or {}).items()}
        self.replies: dict[tuple[str, str], list[str]] = {}
        for category in SAFETY_CATEGORIES:
            levels = (data.get("replies") or {}).get(category) or {}
            for level in ("concern", "urgent"):
                sentences = levels.get(level)
                if not sentences:
                    raise ConfigError(f"safety replies: {category}.{level} is missing")
                self.replies[(category, level)] = [str(s) for s in sentences]
        self.check_in_lines = [str(s) for s in data.get("check_in") or []]
        self.safe_ack_lines = [str(s) for s in data.get("safe_ack") or []]
        self.blocked_lines = [str(s) for s in data.get("reply_blocked") or []]
        if not (self.check_in_lines and self.safe_ack_lines and self.blocked_lines):
            raise ConfigError("safety resources need check_in, safe_ack and reply_blocked")
        self.default_locale = self.locale(default_locale).code

    @classmethod
    def load(cls, path: Path, default_locale: str) -> SafetyProtocol:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"safety resources {path} could not be read: {exc}") from exc
        return cls(data, default_locale)

    def knows(self, code: str) -> bool:
        key = code.strip().upper()
        return key in self.locales or key in self.aliases

    def locale(self, code: str | None) -> Locale:
        """The locale ``code`` (case-insensitive, aliases such as UK -> GB); unknown or None: the default."""
        key = (code or "").strip().upper()
        key = self.aliases.get(key, key)
        if key in self.locales:
            return self.locales[key]
        if code is None and hasattr(self, "default_locale"):
            return self.locales[self.default_locale.upper()]
        return self.locales["DEFAULT"]

    def _lines(self, sentences: list[str], locale: str | None) -> list[Line]:
        loc = self.locale(locale if locale is not None else self.default_locale)
        lines = []
        for sentence in sentences:
            if "{abuse_line}" in sentence and "abuse_line" not in loc.written:
                continue
            text = sentence.format(**loc.written) if "{" in sentence else sentence
            say = sentence.format(**loc.spoken) if "{" in sentence else sentence
            lines.append(Line(_capitalised(text), _capitalised(say)))
        return lines

    def reply(self, category: SafetyCategory, level: SafetyLevel, locale: str | None) -> list[Line]:
        return self._lines(self.replies[(category, level)], locale)

    def check_in(self, locale: str | None) -> list[Line]:
        return self._lines(self.check_in_lines, locale)

    def safe_ack(self, locale: str | None) -> list[Line]:
        return self._lines(self.safe_ack_lines, locale)

    def reply_blocked(self, locale: str | None) -> list[Line]:
        return self._lines(self.blocked_lines, locale)

    def all_lines(self, locale: str | None) -> list[Line]:
        """Every sentence the protocol can say in ``locale`` (their speech is made once at startup)."""
        lines = [line for key in self.replies for line in self.reply(key[0], key[1], locale)]  # type: ignore[arg-type]
        return lines + self.check_in(locale) + self.safe_ack(locale) + self.reply_blocked(locale)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


# A short answer (a few words) is read by how it starts; a longer message only by explicit phrases, so "I'm
# thinking about my exam" or "can you help with my essay" is neither.
_SHORT_WORDS = 6
_SHORT_NOT_SAFE = re.compile(
    r"^(?:no|nope|nah|not really|not sure|not yet|i don't know|i dont know|idk|maybe not|i don't think so)\b"
)
_NOT_SAFE = re.compile(
    r"\b(?:(?:i'm|i am|we're|we are|he's|she's|they're|he is|she is|they are) not (?:safe|okay|ok|fine|alright)|"
    r"not safe|i can't promise|i cannot promise|i'm scared|i am scared|i need help|please help)\b"
)
_SHORT_SAFE = re.compile(
    r"^(?:yes|yeah|yep|yup|i think so|i promise)\b|^(?:i am|i'm|we are|we're|they are|he is|she is)$"
)
_SAFE = re.compile(
    r"\b(?:i'm|i am|we're|we are|he's|she's|they're|he is|she is|they are|everyone is|everyone's) (?:safe|okay|ok|"
    r"fine|alright|all right)(?: now)?\b|\b(?:not going to|won't|will not) (?:hurt|kill|harm) (?:myself|anyone|"
    r"him|her|them)\b"
)


def says_safe(text: str) -> bool | None:
    """How a person in safety mode answers "are you safe?": True (they are), False (not, or unsure: the protocol
    again), None (the message is about something else)."""
    t = " ".join(text.lower().replace("\u2019", "'").split()).strip(" .!?")
    if not t:
        return None
    short = len(t.split()) <= _SHORT_WORDS
    if _SAFE.search(t):
        return True
    if _NOT_SAFE.search(t) or (short and _SHORT_NOT_SAFE.search(t)):
        return False
    if short and _SHORT_SAFE.search(t):
        return True
    return None
