"""The reply-fit evaluation (scripts/common/reply_fit.py) around the model: figures, the shape study, the rubric's
agreement with a person's labels, and a frozen test split that training never reads."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import REPO_ROOT
from backend.engines.protocols import EMOTIONS, GenerationOptions
from scripts.common.mentor_rubric import judge
from scripts.common.reply_fit import (
    LABELS,
    TEST_SET,
    Detected,
    Sentence,
    fit_figures,
    fit_table,
    given_verdicts,
    label_agreement,
    load_sentences,
    shape_study,
    stream_reply,
    verdicts,
)

pytestmark = pytest.mark.fast

SENTENCES = [
    Sentence("a", "My dog died and the house feels empty.", "sad"),
    Sentence("b", "My exam is tomorrow.", "anxious"),
    Sentence("c", "The meeting is at three.", "neutral"),
]
DETECTED = [Detected("sad", 0.9, "sad"), Detected("anxious", 0.8, "anxious"), Detected("neutral", 0.3, "neutral")]
REPLIES = [
    "I'm so sorry about your dog. What do you miss most?",  # fits, shaped
    "That's so annoying! Your teacher will help. What do you think?",  # contradicts, invents teacher
    "Okay, three it is. What would you like ready before it starts?",  # fits, shaped
]


def test_detected_and_true_feelings_are_judged_apart() -> None:
    """A reply is appropriate against the feeling a person reads; contradictions of the detected emotion
    (what the model was told) are counted on their own."""
    sentence = [Sentence("d", "They gave away my room at the hotel!", "angry")]
    reply = ["That's wonderful news! What will you do with the room?"]
    told_happy = [Detected("happy", 0.6, "happy")]
    assert not verdicts(sentence, reply)[0].appropriate  # a person reads anger
    assert given_verdicts(sentence, told_happy, reply)[0].contradicts == ()  # it fits what the model was told
    figures = fit_figures(reply, verdicts(sentence, reply), given_verdicts(sentence, told_happy, reply), [1.0])
    assert figures["contradicting_feeling_words"] == 0 and figures["contradicting_true_feeling"] == 1


def test_fit_figures_count_what_the_rubric_finds() -> None:
    judged = verdicts(SENTENCES, REPLIES)
    figures = fit_figures(REPLIES, judged, given_verdicts(SENTENCES, DETECTED, REPLIES), [1.0, 2.0, 3.0])
    assert figures["appropriate"] == pytest.approx(2 / 3)
    assert figures["contradicting_feeling_words"] == 1 and figures["invented_details"] == 1
    assert figures["blame"] == 0 and figures["one_question"] == 1.0 and figures["speakable"] == 1.0
    assert figures["distinct_openers"] == 1.0 and figures["shaped"] == pytest.approx(2 / 3)
    assert figures["mean_seconds"] == 2.0


def test_shape_study_and_table() -> None:
    judged = verdicts(SENTENCES, REPLIES)
    study = shape_study(REPLIES, judged)
    assert study == {"shaped_n": 2.0, "shaped_appropriate": 1.0, "other_n": 1.0, "other_appropriate": 0.0}
    report = {"sentences": 3, "models": {"base": fit_figures(REPLIES, judged, judged, [1.0] * 3)}}
    table = fit_table(report)
    assert "| replies judged appropriate (rubric) | 67% |" in table and "| blame phrases | 0 |" in table


def test_label_agreement_reads_a_persons_labels(tmp_path: Path) -> None:
    rows = [
        {"user": SENTENCES[0].text, "emotion": "sad", "reply": REPLIES[0], "appropriate": True},
        {"user": SENTENCES[1].text, "emotion": "anxious", "reply": REPLIES[1], "appropriate": False},
        {"user": SENTENCES[2].text, "emotion": "neutral", "reply": REPLIES[2], "appropriate": False},
    ]
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    figures = label_agreement(path)
    assert figures["agreement"] == pytest.approx(2 / 3) and figures["n"] == 3
    assert figures["disagreements"] == [{"reply": REPLIES[2], "person": False, "rubric": True}]


def test_the_test_split_is_fresh_balanced_and_never_trained_on() -> None:
    """Ten sentences per emotion; none of them (or a near copy) is in the training sources; the training
    script and the dataset builder never read it."""
    sentences = load_sentences(TEST_SET)
    assert Counter(s.emotion for s in sentences) == dict.fromkeys(EMOTIONS, 10)
    assert len({s.id for s in sentences}) == len(sentences)

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z']+", text.lower()))

    trained = [
        words(line.split("|", 1)[1])
        for path in (REPO_ROOT / "data/mentor/source").glob("*.txt")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(("U ", "M ")) and "|" in line
    ]
    assert len(trained) >= 1000
    for s in sentences:  # no training line shares more than half of the words (Jaccard) with a test sentence
        mine = words(s.text)
        closest = max(len(mine & t) / len(mine | t) for t in trained)
        assert closest <= 0.5, (s.text, closest)
    for script in ("scripts/training/train_lora.py", "scripts/training/build_mentor_dataset.py"):
        assert "test.jsonl" not in (REPO_ROOT / script).read_text(encoding="utf-8")


def test_the_labelled_replies_are_judged_and_the_rubric_mostly_agrees() -> None:
    """The person's labels (data/mentor/test_labels.jsonl): at least 30 replies, both verdicts present, each
    with a note; the rubric agrees on at least three in four."""
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 30 and {r["appropriate"] for r in rows} == {True, False}
    assert all(r["note"].strip() and r["emotion"] in EMOTIONS for r in rows)
    assert label_agreement(LABELS)["agreement"] >= 0.7
    assert judge(rows[0]["reply"], rows[0]["emotion"], [rows[0]["user"]]).opener


def test_first_words_are_timed_while_streaming() -> None:
    """stream_reply joins the streamed pieces and times the first three words (the server's first chunk)."""

    class Streaming:
        def __init__(self) -> None:
            self.prefixes: list[str] = []

        def stream(self, messages: object, stop: object, options: GenerationOptions) -> Iterator[str]:
            self.prefixes.append(options.reply_prefix)
            yield from ["I'm", " so", " sorry", " about", " that. What happened?"]

    chat = Streaming()
    text, first, total = stream_reply(chat, [])
    assert text == "I'm so sorry about that. What happened?"
    assert 0 <= first <= total
    text, _, _ = stream_reply(chat, [], "Oh,")  # an opening clause, continued by the model
    assert text == "Oh, I'm so sorry about that. What happened?"
    assert chat.prefixes == ["", "Oh,"]


def test_an_earlier_report_is_reused_only_for_the_same_sentences(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models of an earlier report on the same sentences and detected emotions are copied, not generated again;
    a report on anything else is refused."""
    from backend.config import Settings
    from scripts.common import reply_fit

    generated: list[str] = []

    def fake_generate(llm: object, settings: object, sentences: list[Sentence], detected: object) -> object:
        generated.append(str(llm))
        return list(REPLIES), [0.1] * 3, [1.0] * 3

    monkeypatch.setattr(reply_fit, "detect_emotions", lambda sentences, settings: list(DETECTED)[: len(sentences)])
    monkeypatch.setattr(reply_fit, "generate_replies", fake_generate)
    settings = Settings()
    first = reply_fit.evaluate_fit({"old": settings.llm}, settings, SENTENCES)
    assert len(generated) == 1 and first["models"]["old"]["appropriate"] == pytest.approx(2 / 3)
    both = reply_fit.evaluate_fit({"old": settings.llm, "new": settings.llm}, settings, SENTENCES, reuse=first)
    assert len(generated) == 2 and both["models"]["old"] == first["models"]["old"]
    assert both["shape_study"]["shaped_n"] == 4
    with pytest.raises(ValueError, match="other sentences"):
        reply_fit.evaluate_fit({"old": settings.llm}, settings, SENTENCES[:2], reuse=first)


def test_a_persons_reading_is_added_for_the_replies_read(tmp_path: Path) -> None:
    """person_reading counts a model only when every one of its replies was read."""
    from scripts.common.reply_fit import person_reading

    path = tmp_path / "reading.jsonl"
    rows = [
        {"id": "a", "model": "new", "reply": REPLIES[0], "appropriate": True},
        {"id": "b", "model": "new", "reply": REPLIES[1], "appropriate": False},
        {"id": "c", "model": "new", "reply": REPLIES[2], "appropriate": True},
        {"id": "a", "model": "old", "reply": REPLIES[0], "appropriate": True},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = {"models": {"new": {"replies": REPLIES}, "old": {"replies": REPLIES}}}
    assert person_reading(report, path) == {"new": pytest.approx(2 / 3)}
    assert person_reading(report, tmp_path / "missing.jsonl") == {}
