"""A fixed rubric for mentor replies, applied by code (scripts/evals/mentor.py; issue 15).

A reply is *appropriate* when its opener (first sentence) acknowledges the feeling with words that fit it and
none that contradict it, it blames nobody, it invents no person, pet, time, number or name the user did not
mention and makes no statement after the opener built of words the user never said (UNFOUNDED_WORDS or more),
it asks exactly one question, and it is speakable (no markup or emoji, one to three sentences). Whether the
question is relevant is left to a person: the labelled replies (data/mentor/test_labels.jsonl) measure how often
this rubric agrees with one. ``judge`` takes the feeling to check against: the evaluation passes the feeling a
person reads in the sentence for "appropriate", and counts contradictions of the detected emotion separately.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from backend.mentor.speakable import clean_for_speech
from scripts.common.mentor_data import has_markdown_or_emoji, sentence_count


def _phrases(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


# Feeling words by emotion family (lower case; multi-word phrases allowed). Ambiguous words ("hard", "tough",
# "glad") are in no family: they neither acknowledge nor contradict.
FEELINGS: dict[str, tuple[str, ...]] = {
    "sad": _phrases(
        "sorry, sad, sadness, painful, pain, hurt, hurts, hurtful, heavy, heartbreaking, heartbroken, "
        "loss, losing, lonely, loneliness, grief, grieving, miss, missing, down, low, disappointing, "
        "disappointed, disappointment, gutting, gutted, empty, ache, grieve, sorrow, really hard, so hard, is hard, "
        "hard time, tough time, heartache"
    ),
    "anxious": _phrases(
        "worry, worried, worrying, worries, nervous, nerves, scary, scared, frightening, frightened, "
        "afraid, fear, fears, uneasy, on edge, stress, stressful, stressed, dread, anxious, anxiety, "
        "panic, panicky, terrifying, terrified, unsettling, racing, jittery, nerve-racking, nerve-wracking, "
        "dreading, fearing, scarier, tense, daunting, unnerving, butterflies"
    ),
    "angry": _phrases(
        "frustrating, frustrated, frustration, unfair, infuriating, maddening, angry, anger, annoying, "
        "annoyed, fed up, disrespectful, insulting, outrageous, irritating, irritated, furious, livid, "
        "rude, unacceptable, betrayed, betrayal"
    ),
    "happy": _phrases(
        "wonderful, great news, that's great, how great, congratulations, congrats, lovely, delighted, "
        "proud, exciting, excited, joy, joyful, brilliant, amazing, fantastic, happy, awesome, thrilled, "
        "celebrate, well done, fun, great, delightful, terrific, good news, glorious, heartwarming"
    ),
    "surprised": _phrases(
        "wow, surprise, surprising, surprised, unexpected, out of nowhere, shock, shocked, shocking, "
        "caught off guard, see that coming, saw that coming, out of the blue, what a twist, whoa, "
        "big news, sudden, off guard, change of heart, didn't expect, wasn't expecting, never expected, "
        "unexpectedly, twist, who knew"
    ),
}

# Which families contradict the emotion the model was given. A surprise can be good or bad news, so nothing
# contradicts it; neutral statements are contradicted by strong negative feelings only ("Great, ..." is fine).
CONTRADICTS: dict[str, tuple[str, ...]] = {
    "happy": ("sad", "anxious", "angry"),
    "sad": ("happy", "angry"),
    "anxious": ("happy", "angry"),
    "angry": ("happy", "anxious"),
    "surprised": (),
    "neutral": ("sad", "anxious", "angry"),
}

# Which families acknowledge the emotion (neutral needs no feeling word; a surprise may be named as such or by
# the feeling it brings).
ACKNOWLEDGES: dict[str, tuple[str, ...]] = {
    "happy": ("happy",),
    "sad": ("sad",),
    "anxious": ("anxious",),
    "angry": ("angry",),
    "surprised": ("surprised", "happy", "sad", "anxious", "angry"),
    "neutral": (),
}

BLAME = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\b(?:it was |it's |its )?(?<!not )your (?:own )?fault\b",
        r"\byou should(?:n't| not)? have\b",
        r"\bwhy (?:did|didn't|would|wouldn't) you\b",
        r"\byou (?:were|are) (?:wrong|to blame|careless|lazy)\b",
        r"\bbecause of you\b",
        r"\byou caused\b",
        r"\bif only you\b",
        r"\byou brought (?:it|this) on\b",
    )
)
_NOT_BLAME = re.compile(r"\b(?:not|never|isn't|wasn't) (?:all )?your (?:own )?fault\b", re.IGNORECASE)

# People, pets and times a reply may only name if the user's words license them: reply term -> user terms.
_LICENSES: dict[str, tuple[str, ...]] = {
    "friend": ("friend", "mate", "bestie", "pal"),
    "mother": ("mother", "mom", "mum", "mam", "parent", "mama"),
    "father": ("father", "dad", "parent", "papa"),
    "sister": ("sister", "sibling"),
    "brother": ("brother", "sibling"),
    "sibling": ("sibling", "sister", "brother"),
    "wife": ("wife", "partner", "spouse"),
    "husband": ("husband", "partner", "spouse"),
    "partner": ("partner", "wife", "husband", "boyfriend", "girlfriend", "spouse", "fiance", "fiancee"),
    "boyfriend": ("boyfriend", "partner", "him"),
    "girlfriend": ("girlfriend", "partner", "her"),
    "son": ("son", "boy", "kid", "child"),
    "parent": ("parent", "mother", "mom", "mum", "father", "dad", "son", "daughter", "kid", "child", "baby"),
    "daughter": ("daughter", "girl", "kid", "child"),
    "child": ("child", "kid", "son", "daughter", "baby", "toddler"),
    "kid": ("kid", "child", "son", "daughter", "baby"),
    "baby": ("baby", "pregnant", "newborn"),
    "boss": ("boss", "manager", "supervisor"),
    "manager": ("manager", "boss", "supervisor"),
    "colleague": ("colleague", "coworker", "co-worker", "workmate", "team"),
    "coworker": ("coworker", "colleague", "co-worker", "workmate"),
    "teacher": ("teacher", "tutor", "professor", "lecturer"),
    "neighbour": ("neighbour", "neighbor"),
    "neighbor": ("neighbour", "neighbor"),
    "roommate": ("roommate", "flatmate", "housemate"),
    "grandmother": ("grandmother", "grandma", "nan", "granny", "gran"),
    "grandfather": ("grandfather", "grandpa", "granddad", "grandad"),
    "dog": ("dog", "puppy", "pup"),
    "cat": ("cat", "kitten"),
    "pet": ("pet", "dog", "cat", "puppy", "kitten", "hamster", "rabbit", "bird", "fish"),
    "landlord": ("landlord", "landlady"),
    "doctor": ("doctor", "gp", "nurse", "hospital", "test", "tests", "appointment", "clinic"),
    "yesterday": ("yesterday",),
    "tomorrow": ("tomorrow",),
    "tonight": ("tonight",),
    "weekend": ("weekend", "saturday", "sunday"),
    **{day: (day,) for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")},
}
_PLURAL = {"children": "child", "kids": "kid", "parents": "parent", "friends": "friend", "colleagues": "colleague"}
_CRISIS_HELP = re.compile(r"emergency number|crisis line", re.I)
_HELP = re.compile(r"emergency number|crisis line|trusted person|someone you trust|a doctor|your doctor", re.I)
_NUMBER_WORDS = _phrases(
    "two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, fifteen, twenty, thirty, forty, "
    "fifty, hundred, thousand, million"
)
# A statement after the opener that brings in this many content words the user never said is taken as invented
# ("A close office door is like a window on your own space."); questions and real-help replies are exempt.
UNFOUNDED_WORDS = 3
_STOPWORDS = frozenset(
    re.findall(
        r"\S+",
        """about above after again against also always another around back because been before being below between
    both come comes could does doing done down during each enough especially even ever every few from further
    gets getting give going gone good have having here hers herself himself into itself just keep keeps kind
    know like little lots make makes making many maybe might more most much must myself need needs never okay
    once only other others ours ourselves over part quite really right same says seem seems should some
    something sometimes sound sounds still such sure take takes tell than that that's their theirs them
    themselves then there there's these they they'd they'll they're they've thing things think this those
    though through time times told totally under until upon very want wants well were what what's when where
    which while whom will with would your yours yourself feel feels feeling feelings glad completely already
    hear heard yeah""",
    )
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+(?:[.,]\d+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Verdict:
    """The rubric's reading of one reply."""

    emotion: str
    opener: str
    acknowledges: bool
    contradicts: tuple[str, ...] = ()
    blames: tuple[str, ...] = ()
    invented: tuple[str, ...] = ()
    unfounded: tuple[str, ...] = ()  # content words of a statement after the opener that the user never said
    questions: int = 0
    speakable: bool = True
    reasons: tuple[str, ...] = field(default=())

    @property
    def appropriate(self) -> bool:
        return not self.reasons


def _norm(word: str) -> str:
    w = word.lower().strip("'-")
    if w.endswith("'s"):
        w = w[:-2]
    if w in _PLURAL:
        return _PLURAL[w]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss") and w[:-1] in _LICENSES:
        return w[:-1]
    return w


def words_of(text: str) -> list[str]:
    return [_norm(w) for w in _WORD.findall(text)]


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    return _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""


def opener_words(text: str, n: int = 3) -> str:
    """The first ``n`` words, lower case, without punctuation (for counting distinct openers)."""
    return " ".join(w.lower() for w in _WORD.findall(text)[:n])


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])", text) is not None


def feeling_families(text: str) -> dict[str, list[str]]:
    """The feeling words in ``text`` by family (whole words or phrases, case-insensitive)."""
    lowered = " ".join(text.lower().replace("’", "'").split())
    found: dict[str, list[str]] = {}
    for family, words in FEELINGS.items():
        hits = [w for w in words if _has_phrase(lowered, w)]
        if hits:
            found[family] = hits
    return found


def blame_phrases(text: str) -> list[str]:
    cleaned = _NOT_BLAME.sub(" ", text.replace("’", "'"))
    return [m.group(0) for p in BLAME for m in p.finditer(cleaned)]


def invented_details(reply: str, context: Iterable[str]) -> list[str]:
    """People, pets, days, numbers and names in ``reply`` that nothing in ``context`` (the user's words, earlier
    turns, remembered facts) mentions. A doctor is allowed where the reply points to real help."""
    said = set()
    for text in context:
        said.update(words_of(text))
    said_lower = " ".join(context).lower()
    invented: list[str] = []
    for raw in _WORD.findall(reply):
        word = _norm(raw)
        if word in _LICENSES and not said.intersection(_LICENSES[word]):
            if word == "doctor" and _HELP.search(reply):
                continue
            invented.append(word)
        elif (raw[0].isdigit() or word in _NUMBER_WORDS) and word not in said:
            invented.append(word)
    invented = [w for w in invented if not (w == "two" and re.search(r"\b(?:the|you) two\b", reply, re.I))]
    for name in _proper_names(reply):
        key = _norm(name)
        if key not in _LICENSES and key not in _NUMBER_WORDS and key not in said_lower:
            invented.append(name.removesuffix("'s"))
    return sorted(set(invented))


def _stem(word: str) -> str:
    w = word.lower().strip("'")
    for suffix in ("'s", "ing", "ed", "es", "s", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


_FEELING_WORDS = frozenset(w for words in FEELINGS.values() for phrase in words for w in phrase.split())


_CLAUSE = re.compile(r",|\b(?:especially|when|because|after|since|as if|like)\b", re.IGNORECASE)


def unfounded_words(reply: str, context: Iterable[str]) -> list[str]:
    """Content words that nothing in ``context`` says, in the claims of a reply: the opener's clause after its
    first comma or "especially/when/because..." ("That's hard, especially when your garden is gone."), and
    the statements after the opener (not its questions)."""
    said = {_stem(w) for text in context for w in _WORD.findall(text)}
    sentences = _SENTENCE_END.split(" ".join(reply.split()))
    clause = _CLAUSE.search(sentences[0]) if sentences else None
    claims = [sentences[0][clause.end() :]] if clause else []
    claims += [s for s in sentences[1:] if not s.rstrip().endswith("?")]
    novel: list[str] = []
    for sentence in claims:
        for word in _WORD.findall(sentence):
            lw = word.lower()
            if len(lw) >= 4 and lw not in _STOPWORDS and lw not in _FEELING_WORDS and _stem(lw) not in said:
                novel.append(lw)
    return novel


def _proper_names(reply: str) -> list[str]:
    """Capitalised words that do not open a sentence (names, places), except I and its contractions."""
    names: list[str] = []
    for sentence in _SENTENCE_END.split(" ".join(reply.split())):
        tokens = _WORD.findall(sentence)
        for token in tokens[1:]:
            if token[0].isupper() and not token.isupper() and token.split("'")[0] not in {"I", "Okay"}:
                names.append(token)
    return names


def judge(reply: str, emotion: str, context: Sequence[str]) -> Verdict:
    """Apply the rubric to ``reply``, given to the model with ``emotion``, answering ``context`` (the user's
    message last, earlier turns and remembered facts before it)."""
    spoken = clean_for_speech(reply)
    opener = first_sentence(spoken)
    families = feeling_families(opener)
    acknowledges = (
        emotion == "neutral"
        or any(f in families for f in ACKNOWLEDGES.get(emotion, ()))
        or _CRISIS_HELP.search(spoken) is not None  # "I'm glad you told me" then real help is the right opener
    )
    contradicts = tuple(w for f in CONTRADICTS.get(emotion, ()) for w in families.get(f, []))
    blames = tuple(blame_phrases(spoken))
    invented = tuple(invented_details(spoken, context))
    unfounded = () if _CRISIS_HELP.search(spoken) else tuple(unfounded_words(spoken, context))
    if len(unfounded) < UNFOUNDED_WORDS:
        unfounded = ()
    questions = spoken.count("?")
    speakable = bool(spoken) and not has_markdown_or_emoji(reply) and 1 <= sentence_count(spoken) <= 3
    reasons = [
        *([] if acknowledges else [f"opener does not name the {emotion} feeling"]),
        *([f"contradicts {emotion}: {', '.join(contradicts)}"] if contradicts else []),
        *([f"blames: {'; '.join(blames)}"] if blames else []),
        *([f"invents: {', '.join(invented)}"] if invented else []),
        *([f"unfounded statement: {', '.join(unfounded)}"] if unfounded else []),
        *([] if questions == 1 else [f"{questions} questions"]),
        *([] if speakable else ["not speakable"]),
    ]
    return Verdict(
        emotion, opener, acknowledges, contradicts, blames, invented, unfounded, questions, speakable, tuple(reasons)
    )


def is_shaped(reply: str) -> bool:
    """An acknowledgement then one question: at most two sentences, the last the only question."""
    spoken = " ".join(clean_for_speech(reply).split())
    return sentence_count(spoken) <= 2 and spoken.count("?") == 1 and spoken.endswith("?")


def distinct_opener_share(replies: Sequence[str]) -> float:
    openers = [opener_words(clean_for_speech(r)) for r in replies]
    return len(set(openers)) / max(1, len(openers))


def agreement(rubric: Sequence[bool], person: Sequence[bool]) -> dict[str, float]:
    """Share of replies where the rubric and a person agree, and Cohen's kappa."""
    n = len(rubric)
    if n == 0 or n != len(person):
        raise ValueError("agreement needs two equally long, non-empty label lists")
    observed = sum(a == b for a, b in zip(rubric, person, strict=True)) / n
    p_yes = (sum(rubric) / n) * (sum(person) / n)
    p_no = (1 - sum(rubric) / n) * (1 - sum(person) / n)
    expected = p_yes + p_no
    kappa = 1.0 if expected >= 1 else (observed - expected) / (1 - expected)
    return {"agreement": observed, "kappa": kappa, "n": float(n)}
