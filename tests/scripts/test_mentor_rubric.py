"""The reply rubric (scripts/common/mentor_rubric.py) on replies a person has judged: the issue's misfits fail it for
the right reason, well-fitting replies pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.common.mentor_rubric import (
    agreement,
    blame_phrases,
    distinct_opener_share,
    feeling_families,
    invented_details,
    is_shaped,
    judge,
    opener_words,
)

pytestmark = pytest.mark.fast

DOG = "My dog died yesterday and the house feels empty."
BLAMED = "I can't believe they blamed me for their own mistake."
PHONE = "My heart races every time my phone rings."
MEETING = "The meeting is scheduled for three o'clock."


@pytest.mark.parametrize(
    ("reply", "emotion", "user", "reason"),
    [
        ("It takes time for your pet to come back home.", "sad", DOG, "does not name the sad feeling"),
        ("That's so frustrating, especially when it was your fault. What happened?", "angry", BLAMED, "blames"),
        ("That's so annoying! What makes your phone ring?", "anxious", PHONE, "contradicts anxious: annoying"),
        ("Sounds like your friend wants to talk. What will you say?", "neutral", MEETING, "invents: friend"),
        ("I'm sorry about your dog. It happened on Tuesday. How are you?", "sad", DOG, "invents: tuesday"),
        ("Congratulations! What will you do next? And when?", "happy", "I got the job!", "2 questions"),
        ("Congratulations, that is wonderful news.", "happy", "I got the job!", "0 questions"),
        ("**Wow**, what a surprise! How did it happen?", "surprised", "They moved the office!", "not speakable"),
        ("Nerves before a talk are normal. Did Sarah help you?", "anxious", "I give a talk today.", "invents: Sarah"),
        (
            "That's lovely! A close office door is like a window on your own space. How did it feel?",
            "neutral",
            "I moved my desk closer to the window.",
            "unfounded statement: close, office, door, space",
        ),
    ],
)
def test_misfits_fail_for_the_right_reason(reply: str, emotion: str, user: str, reason: str) -> None:
    verdict = judge(reply, emotion, [user])
    assert not verdict.appropriate
    assert any(reason in r for r in verdict.reasons), verdict.reasons


@pytest.mark.parametrize(
    ("reply", "emotion", "context"),
    [
        (
            "I'm so sorry about your dog, a quiet house after a loss like that feels heavy. What do you miss most?",
            "sad",
            [DOG],
        ),
        (
            "Being blamed for someone else's mistake is unfair, and it was not your fault. What did they say?",
            "angry",
            [BLAMED],
        ),
        ("A racing heart at every ring sounds scary. What do you expect to hear when it rings?", "anxious", [PHONE]),
        ("Okay, three o'clock it is. What would you like ready before the meeting?", "neutral", [MEETING]),
        (
            "Wow, Tokyo for a month! What are you most looking forward to?",
            "surprised",
            ["I'm off to Tokyo for a month!"],
        ),
        ("Your mum must be proud, that's wonderful. How will you celebrate?", "happy", ["My mother saw me graduate."]),
        (
            "I'm glad you told me. Please call the local emergency number or a doctor now. Is someone with you?",
            "sad",
            ["I don't want to be here any more."],
        ),
        (
            "Worrying before Anna's wedding speech is natural. What part feels hardest?",
            "anxious",
            ["Anna", "I'm nervous."],
        ),
    ],
)
def test_fitting_replies_pass(reply: str, emotion: str, context: list[str]) -> None:
    verdict = judge(reply, emotion, context)
    assert verdict.appropriate, verdict.reasons


def test_feeling_words_are_whole_words_by_family() -> None:
    assert feeling_families("Wow, what a lovely surprise") == {"happy": ["lovely"], "surprised": ["wow", "surprise"]}
    assert feeling_families("Downtown is busy; a followup.") == {}  # "down" inside a word is not a feeling
    assert feeling_families("You seem fed up.") == {"angry": ["fed up"]}


def test_blame_but_not_reassurance() -> None:
    assert blame_phrases("You should have told them.") == ["You should have"]
    assert blame_phrases("It was not your fault at all.") == []
    assert blame_phrases("It's not your fault. Why did you feel that way?") == ["Why did you"]


def test_licensed_details_are_not_invented() -> None:
    assert invented_details("How are your kids doing?", ["My children start school."]) == []
    assert invented_details("What did your mum say?", ["I told my mom."]) == []
    assert invented_details("What did your sister say on Friday?", ["I told my mom."]) == ["friday", "sister"]
    assert invented_details("Two weeks is a long time.", ["I waited two weeks."]) == []
    assert invented_details("Forty days is a long time.", ["I waited."]) == ["forty"]


def test_openers_shape_and_agreement() -> None:
    assert opener_words("That's so sad, really. Why?") == "that's so sad"
    assert distinct_opener_share(["That's so sad.", "That's so sad!", "I'm sorry."]) == pytest.approx(2 / 3)
    assert is_shaped("I'm sorry about your dog. What do you miss most?")
    assert not is_shaped("I'm sorry. Dogs are great. What do you miss?")
    assert not is_shaped("What do you miss? I'm sorry.")
    figures = agreement([True, True, False, False], [True, False, False, False])
    assert figures["agreement"] == 0.75 and figures["kappa"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        agreement([], [])


def test_readme_sections_are_replaced_between_their_markers() -> None:
    from scripts.common.readme_sections import README, SECTION_FILES, replace_section

    text = "intro\n<!-- fit -->\nold\nlines\n<!-- /fit -->\nrest\n"
    assert replace_section(text, "fit", "new") == "intro\n<!-- fit -->\nnew\n<!-- /fit -->\nrest\n"
    with pytest.raises(ValueError):
        replace_section(text, "voice", "x")
    assert set(SECTION_FILES) == {"eval_mentor:fit", "eval_voice"}  # the sections the evaluation scripts write
    for name, path in SECTION_FILES.items():  # each in its page under docs/, none in the hand-written README
        assert path.parent.name == "docs"
        page = path.read_text(encoding="utf-8")
        assert replace_section(page, name, "x").count("<!-- ") == page.count("<!-- ")
        with pytest.raises(ValueError):
            replace_section(README.read_text(encoding="utf-8"), name, "x")


def test_update_readme_writes_the_sections_page(tmp_path: Path) -> None:
    from scripts.common.readme_sections import update_readme

    page = tmp_path / "MODEL.md"
    page.write_text("a\n<!-- eval_voice -->\nold\n<!-- /eval_voice -->\nb\n", encoding="utf-8")
    assert update_readme("eval_voice", "new", path=page) == page
    assert page.read_text(encoding="utf-8") == "a\n<!-- eval_voice -->\nnew\n<!-- /eval_voice -->\nb\n"
    with pytest.raises(KeyError):
        update_readme("no_such_section", "x")
