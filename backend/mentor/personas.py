"""Personas: who the mentor is for a session. One YAML file each under ``mentor.personas_dir``.

A persona has a name, a description, its own system prompt (or the base one), per-emotion guidance overrides
and a voice (engine voice, rate, pitch). Shared with training: ``Persona.prompt(base)`` is the MentorPrompt
``build_messages`` gets, so the adapter learns and serves the same persona prompts. The system prompt is the
first message of every prompt, so a session's prefix stays stable from turn to turn (the LLM prefix cache).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml

from backend.config import MentorSettings, resolve_path
from backend.core.exceptions import ClarityError, ConfigError
from backend.engines.protocols import EMOTIONS, GenerationOptions, PenaltyScope
from backend.mentor.prompt_builder import MentorPrompt

PERSONA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_INSTRUCTION_TAG = re.compile(r"(?:^|\b)(?:persona|mentor)\s*[:=]\s*([A-Za-z0-9_-]+)", re.I)


class UnknownPersonaError(ClarityError):
    """A persona id that names no persona: like a session id that names no session, 404 over REST."""

    code = "unknown_persona"
    http_status = 404


@dataclass(frozen=True)
class PersonaVoice:
    """The persona's speaking voice at neutral; the person's emotion still shapes it (voice_style.py).
    None keeps the configured ``tts.*`` value."""

    voice: str | None = None
    rate: int | None = None
    pitch: int | None = None


@dataclass(frozen=True)
class Persona:
    id: str
    name: str
    title: str
    description: str
    system_prompt: str | None = None  # None: the base prompt (mentor.system_prompt_path)
    emotion_guidance: Mapping[str, str] = field(default_factory=dict)  # overrides, by emotion
    voice: PersonaVoice = PersonaVoice()
    # One sentence added to the guidance of every emotion: the guidance is the system message right before the
    # user's, where a small model attends most, so it carries what makes this persona answer differently.
    reminder: str | None = None
    # Which tokens the repetition penalty counts for this persona (None: llm's repetition_penalty_scope).
    repetition_penalty_scope: PenaltyScope | None = None

    @property
    def generation(self) -> GenerationOptions:
        return GenerationOptions(repetition_penalty_scope=self.repetition_penalty_scope)

    def prompt(self, base: MentorPrompt) -> MentorPrompt:
        """The MentorPrompt for this persona: its system prompt, and the base guidance with its overrides, each
        followed by its reminder."""
        guidance = {**base.emotion_guidance, **self.emotion_guidance}
        if self.reminder:
            guidance = {emotion: f"{text} {self.reminder}" for emotion, text in guidance.items()}
        return MentorPrompt(system_prompt=self.system_prompt or base.system_prompt, emotion_guidance=guidance)


def _text(raw: Any, where: str, key: str, *, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ConfigError(f"{where}: '{key}' is required")
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be text")
    return " ".join(value.split()) if key != "system_prompt" else value.strip()


def parse_persona(persona_id: str, raw: Any, where: str) -> Persona:
    """A persona from one file's mapping; ConfigError naming the file and key on anything malformed."""
    if not PERSONA_ID.fullmatch(persona_id):
        raise ConfigError(f"{where}: a persona file name must match {PERSONA_ID.pattern} (it is the persona id)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    known = {
        "name",
        "title",
        "description",
        "system_prompt",
        "reminder",
        "emotion_guidance",
        "voice",
        "repetition_penalty_scope",
    }
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    guidance_raw = raw.get("emotion_guidance") or {}
    if not isinstance(guidance_raw, dict) or not set(guidance_raw) <= set(EMOTIONS):
        raise ConfigError(f"{where}: emotion_guidance must map emotions ({', '.join(EMOTIONS)}) to text")
    voice_raw = raw.get("voice") or {}
    if not isinstance(voice_raw, dict) or not set(voice_raw) <= {"voice", "rate", "pitch"}:
        raise ConfigError(f"{where}: voice takes voice, rate and pitch")
    rate, pitch = voice_raw.get("rate"), voice_raw.get("pitch")
    if rate is not None and not (isinstance(rate, int) and 80 <= rate <= 450):
        raise ConfigError(f"{where}: voice.rate must be 80-450 words per minute")
    if pitch is not None and not (isinstance(pitch, int) and 0 <= pitch <= 99):
        raise ConfigError(f"{where}: voice.pitch must be 0-99")
    scope = raw.get("repetition_penalty_scope")
    if scope not in (None, *get_args(PenaltyScope)):
        raise ConfigError(f"{where}: repetition_penalty_scope must be one of {', '.join(get_args(PenaltyScope))}")
    return Persona(
        id=persona_id,
        name=_text(raw, where, "name") or persona_id,
        title=_text(raw, where, "title") or "",
        description=_text(raw, where, "description") or "",
        system_prompt=_text(raw, where, "system_prompt", required=False),
        reminder=_text(raw, where, "reminder", required=False),
        emotion_guidance={str(k): " ".join(str(v).split()) for k, v in guidance_raw.items() if v},
        voice=PersonaVoice(voice=voice_raw.get("voice"), rate=rate, pitch=pitch),
        repetition_penalty_scope=scope,
    )


class PersonaCatalog:
    """The personas, by id, and the default one. ``get`` raises UnknownPersonaError for an unknown id."""

    def __init__(self, personas: Mapping[str, Persona], default_id: str) -> None:
        if default_id not in personas:
            known = ", ".join(sorted(personas)) or "none"
            raise ConfigError(f"mentor.default_persona '{default_id}' is not a persona (known: {known})")
        self._personas = dict(sorted(personas.items()))
        self.default_id = default_id

    @property
    def default(self) -> Persona:
        return self._personas[self.default_id]

    def __iter__(self) -> Iterator[Persona]:
        return iter(self._personas.values())

    def __len__(self) -> int:
        return len(self._personas)

    def get(self, persona_id: str | None) -> Persona:
        """The persona ``persona_id`` (None: the default)."""
        if persona_id is None:
            return self.default
        persona = self._personas.get(persona_id)
        if persona is None:
            raise UnknownPersonaError(
                f"unknown persona '{persona_id[:40]}'; known personas: {', '.join(self._personas)}"
            )
        return persona

    def check(self, persona_id: str | None) -> str | None:
        """``persona_id`` if it names a persona (None passes); UnknownPersonaError otherwise."""
        return None if persona_id is None else self.get(persona_id).id

    def from_instructions(self, instructions: str | None) -> Persona | None:
        """The persona a free-text instruction names, for wires whose clients send instructions instead of an
        id (OpenAI Realtime ``session.instructions``): the whole text is a persona id or name
        (case-insensitive), or it holds ``persona: <id>``. None when it names none (keep the session's)."""
        if not instructions or not instructions.strip():
            return None
        text = instructions.strip()
        by_name = {p.id: p for p in self} | {p.name.lower(): p for p in self}
        if text.lower() in by_name:
            return by_name[text.lower()]
        tag = _INSTRUCTION_TAG.search(text)
        if tag is not None:
            return self._personas.get(tag.group(1).lower()) or by_name.get(tag.group(1).lower())
        return None


def load_personas(settings: MentorSettings) -> PersonaCatalog:
    """Every ``*.yaml`` under ``mentor.personas_dir``. Blocking (disk); ConfigError on a malformed file."""
    folder: Path = resolve_path(settings.personas_dir)
    personas: dict[str, Persona] = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        personas[path.stem] = parse_persona(path.stem, raw, str(path))
    if not personas:
        raise ConfigError(f"no personas in {folder} (one YAML file per persona)")
    return PersonaCatalog(personas, settings.default_persona)
