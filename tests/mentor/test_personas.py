"""Personas: the files under config/personas load into distinct mentors; prompts, voices and lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.config import MentorSettings, TTSSettings
from backend.core.exceptions import ConfigError
from backend.engines.protocols import GenerationOptions
from backend.mentor.personas import PersonaCatalog, PersonaVoice, UnknownPersonaError, load_personas, parse_persona
from backend.mentor.prompt_builder import MEMORY_INTRO, MentorPrompt, build_messages, load_mentor_prompt
from backend.mentor.voice_style import voice_style_for
from backend.store.records import HistoryTurn

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def catalog() -> PersonaCatalog:
    return load_personas(MentorSettings())


def test_the_shipped_personas_differ_in_prompt_and_voice(catalog: PersonaCatalog) -> None:
    """At least three personas load, the default is one of them, and each has its own system prompt and its own
    voice (engine voice, rate, pitch): a listener hears which mentor answers."""
    base = load_mentor_prompt(MentorSettings())
    assert len(catalog) >= 3 and catalog.default.id == "wellbeing"
    prompts = {p.id: p.prompt(base).system_prompt for p in catalog}
    voices = {p.id: (p.voice.voice, p.voice.rate, p.voice.pitch) for p in catalog}
    assert len(set(prompts.values())) == len(catalog)
    assert len(set(voices.values())) == len(catalog)
    assert len({v[0] for v in voices.values()}) == len(catalog), voices  # three different engine voices
    assert prompts["wellbeing"] == base.system_prompt  # the default persona is the prompt the adapter learned first
    for persona in catalog:
        assert persona.name and persona.title and persona.description


def test_persona_guidance_overrides_only_what_it_names(catalog: PersonaCatalog) -> None:
    """A persona's guidance replaces the base guidance for the emotions it names and keeps the rest; its reminder
    follows every emotion's guidance."""
    base = MentorPrompt("base", {"sad": "base sad", "anxious": "base anxious", "neutral": "base neutral"})
    persona = catalog.get("study-coach")
    coach = persona.prompt(base)
    assert persona.reminder and all(g.endswith(f" {persona.reminder}") for g in coach.emotion_guidance.values())
    assert coach.emotion_guidance["anxious"] == f"{persona.emotion_guidance['anxious']} {persona.reminder}"
    assert coach.emotion_guidance["neutral"] == f"base neutral {persona.reminder}"


def test_unknown_persona_is_a_clear_error(catalog: PersonaCatalog) -> None:
    """An unknown id raises unknown_persona naming the known ones; None means the default."""
    assert catalog.get(None) is catalog.default
    assert catalog.check(None) is None and catalog.check("career-mentor") == "career-mentor"
    with pytest.raises(UnknownPersonaError) as err:
        catalog.get("pirate")
    assert err.value.code == "unknown_persona" and "study-coach" in err.value.message


@pytest.mark.parametrize(
    ("instructions", "expected"),
    [
        ("study-coach", "study-coach"),
        ("Morgan", "career-mentor"),
        ("You are helpful. persona: study-coach", "study-coach"),
        ("mentor=wellbeing", "wellbeing"),
        ("Be a helpful assistant.", None),
        ("", None),
        (None, None),
    ],
)
def test_persona_from_realtime_instructions(
    catalog: PersonaCatalog, instructions: str | None, expected: str | None
) -> None:
    """The Realtime hook: instructions that are a persona id or name, or hold ``persona: <id>``, pick it; any
    other text picks none (the session keeps its persona)."""
    found = catalog.from_instructions(instructions)
    assert (found.id if found else None) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"description": "x"}, "'name' is required"),
        ({"name": "A", "colour": "red"}, "unknown keys colour"),
        ({"name": "A", "emotion_guidance": {"bored": "x"}}, "emotion_guidance"),
        ({"name": "A", "voice": {"rate": 20}}, "voice.rate"),
        ({"name": "A", "voice": {"pitch": 200}}, "voice.pitch"),
        ({"name": "A", "repetition_penalty_scope": "everything"}, "repetition_penalty_scope must be one of"),
        ("just text", "expected a mapping"),
    ],
)
def test_malformed_persona_files_are_startup_errors(raw: object, message: str) -> None:
    """A malformed persona file stops the server at startup with the file and the key named."""
    with pytest.raises(ConfigError, match=message):
        parse_persona("p", raw, "p.yaml")


def test_persona_folder_and_default_are_checked(tmp_path: Path) -> None:
    """No persona files, or a default that names none of them, is a startup error."""
    with pytest.raises(ConfigError, match="no personas"):
        load_personas(MentorSettings(personas_dir=tmp_path))
    (tmp_path / "only.yaml").write_text("name: Only\ntitle: T\ndescription: D\n")
    with pytest.raises(ConfigError, match="default_persona 'wellbeing'"):
        load_personas(MentorSettings(personas_dir=tmp_path))
    assert load_personas(MentorSettings(personas_dir=tmp_path, default_persona="only")).default.name == "Only"


def test_persona_voice_is_the_base_of_the_emotion_style() -> None:
    """The persona's voice, rate and pitch are the neutral voice; the emotion shapes it as before; a persona
    without a voice keeps tts.*."""
    tts = TTSSettings(rate=170, pitch=50)
    own = PersonaVoice(voice="en-gb-x-rp", rate=150, pitch=30)
    neutral, sad = voice_style_for("neutral", tts, own), voice_style_for("sad", tts, own)
    assert (neutral.voice, neutral.rate, neutral.pitch) == ("en-gb-x-rp", 150, 30)
    assert sad.rate < neutral.rate and sad.pitch < neutral.pitch and sad.voice == "en-gb-x-rp"
    plain = voice_style_for("neutral", tts)
    assert (plain.voice, plain.rate, plain.pitch) == (None, 170, 50)


def test_persona_prompt_is_a_stable_prefix_and_memories_go_last(catalog: PersonaCatalog) -> None:
    """With a persona the system prompt is still the first message and unchanged from turn to turn (the prefix
    cache), and remembered facts go into the guidance message just before the user's, never into the prefix."""
    prompt = catalog.get("career-mentor").prompt(load_mentor_prompt(MentorSettings()))
    history = [HistoryTurn("user", "My manager ignores me."), HistoryTurn("assistant", "That sounds hard.")]
    first = build_messages(prompt, history, "What should I do?", "sad")
    later = build_messages(prompt, history, "Any idea?", "anxious", memories=["I have a review on Friday."])
    assert first[:3] == later[:3] and first[0].content == prompt.system_prompt
    assert later[-2].role == "system" and MEMORY_INTRO in later[-2].content
    assert '"I have a review on Friday."' in later[-2].content and MEMORY_INTRO not in first[-2].content


def test_personas_choose_their_repetition_penalty_scope(catalog: PersonaCatalog) -> None:
    """The default persona leaves the scope to llm (the reply only: its replies restate the person's words); the
    coaches count the prompt too, which keeps their own words (measured in docs/MENTOR.md, "Personas")."""
    assert catalog.default.generation == GenerationOptions()
    for coach in ("study-coach", "career-mentor"):
        assert catalog.get(coach).generation == GenerationOptions(repetition_penalty_scope="prompt_and_reply")
    raw = {"name": "A", "title": "T", "description": "D", "repetition_penalty_scope": "reply"}
    parsed = parse_persona("p", raw, "p.yaml")
    assert parsed.generation.repetition_penalty_scope == "reply"
