"""Negation-aware patterns for crisis statements and unsafe replies (the ``patterns`` safety backend, and the
first stage of the ``embedded`` one).

A message is normalised first (lower case, straight quotes, common spoken and misspelt forms of the words that
matter, e.g. "wanna kil myslef" -> "want to kill myself"), then split into clauses; a clause matches a category
when one of its patterns does and no guard (negation, figurative use) covers the match. The level is ``urgent``
when the rule itself says so (an act in progress, means at hand) or an urgency cue ("tonight", "right now", "I
have the pills") is in the same message.

These are written by the team and reviewed against config/safety_examples.yaml; the frozen test set
(data/safety/test_set.jsonl) is never used to write them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from backend.engines.protocols import NOT_FLAGGED, SafetyCategory, SafetyLevel, SafetyVerdict

# --- normalisation ---------------------------------------------------------------------------------------

_SPOKEN = {
    "wanna": "want to",
    "gonna": "going to",
    "gotta": "got to",
    "kinda": "kind of",
    "im": "i'm",
    "ive": "i've",
    "id": "i'd",
    "ill": "i'll",
    "dont": "don't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "cant": "can't",
    "wont": "won't",
    "isnt": "isn't",
    "wasnt": "wasn't",
    "shes": "she's",
    "hes": "he's",
    "theyre": "they're",
    "u": "you",
    "ur": "your",
    "r": "are",
    "rn": "right now",
    "tonite": "tonight",
    "ppl": "people",
    "bc": "because",
    "cuz": "because",
    "coz": "because",
    "tho": "though",
    "mysef": "myself",
    "myslef": "myself",
    "mysel": "myself",
    "myelf": "myself",
    "meself": "myself",
    "mself": "myself",
    "kil": "kill",
    "kms": "kill myself",
    "unalive": "kill",
    "unaliving": "killing",
}

# Words the rules hang on; a misspelling one edit away (two for long words) is read as the word.
_VOCABULARY = (  # six letters or more, and none a common word's neighbour ("stroke"/"strike", "abused"/"amused")
    "suicide",
    "suicidal",
    "myself",
    "himself",
    "herself",
    "themselves",
    "overdose",
    "overdosed",
    "overdosing",
    "breathing",
    "bleeding",
    "starving",
    "vomiting",
    "purging",
    "laxatives",
    "calories",
    "strangled",
    "threatened",
    "unconscious",
    "anymore",
    "worthless",
    "tonight",
    "goodbye",
    "cutting",
    "seizure",
)
_WORD = re.compile(r"[a-z']+(?:-[a-z']+)*|\d+|[^\sa-z'\d]")  # "self-harm" stays one word
_CLAUSE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\s+(?:but|and then|so now)\s+|\n+")


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance with transpositions, stopped early past ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


_KNOWN: set[str] = set()


def _correct(word: str) -> str:
    if word in _SPOKEN:
        return _SPOKEN[word]
    if len(word) < 6 or word in _KNOWN or not word.isalpha():
        return word
    limit = 1 if len(word) < 8 else 2
    for target in _VOCABULARY:
        if target[0] == word[0] and _edit_distance(word, target, limit) <= limit:
            return target
    return word


def normalize(text: str) -> str:
    """Lower case, straight apostrophes, spoken forms and near-misspellings of the key words spelt out."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = re.sub(r"\b(um+|uh+|erm|hmm+)\b,?", " ", text)
    words = [_correct(w) for w in _WORD.findall(text)]
    out = " ".join(words)
    out = re.sub(r" ([.,!?;:])", r"\1", out)
    return re.sub(r"\s+", " ", out).strip()


def clauses(text: str) -> list[str]:
    """The normalised message's sentences and clauses (a crisis in the middle of a longer message is found)."""
    parts = [p.strip() for p in _CLAUSE_SPLIT.split(text) if p and p.strip()]
    return parts or [text]


# --- rules -----------------------------------------------------------------------------------------------

_I = r"(?:i|i'm|i've|i'd|i'll|im|me|my)"
_NEG = r"(?:not|never|no|don't|didn't|doesn't|won't|wouldn't|isn't|wasn't|aren't|can't|cannot|couldn't|nor)"
_SOMEONE = (
    r"(?:my (?:\w+ )?(?:friend|mate|buddy|girlfriend|boyfriend|partner|wife|husband|son|daughter|kid|child|"
    r"brother|sister|mom|mum|mother|dad|father|cousin|roommate|flatmate|colleague|coworker|neighbou?r|"
    r"classmate|student|teen|grandma|grandmother|grandpa|grandfather|baby|uncle|aunt|niece|nephew)s?|"
    r"(?:a|one of my|this|our) (?:friend|kid|child|student|colleague|coworker|neighbou?r|guy|girl|person)s?|"
    r"someone i know|somebody i know|he|she|they)"
)
_SELF_ACT = (
    r"(?:kill(?:ing)? myself|end(?:ing)? (?:my|it|it all|everything|things|my own) ?(?:life)?|"
    r"take (?:my|my own) life|taking my (?:own )?life|commit(?:ting)? suicide|suicide|"
    r"die|dying|be dead|not (?:be )?(?:here|alive|around|exist)|disappear forever|hang myself|"
    r"jump (?:off|from|in front)|shoot myself|overdose|od)"
)


@dataclass(frozen=True)
class Rule:
    category: SafetyCategory
    level: SafetyLevel
    pattern: re.Pattern[str]
    name: str
    negatable: bool = True  # a negation just before the match ("I would never kill myself") cancels it


def _rule(category: SafetyCategory, level: SafetyLevel, name: str, pattern: str, negatable: bool = True) -> Rule:
    return Rule(category, level, re.compile(pattern), name, negatable)


RULES: tuple[Rule, ...] = (
    # --- suicide: an act in progress or means at hand --------------------------------------------------
    _rule("suicide", "urgent", "took_pills",
          r"\b(?:i|i've|i just|i already) (?:just |already |have |had )?(?:took|taken|swallowed|downed|ate) "
          r"(?:a lot of|lots of|loads of|too many|all (?:of )?(?:my|the)|a (?:whole )?(?:bottle|handful|bunch|pack)"
          r" of|(?:a )?(?:bunch|handful|fistful|bottle) of|\d+|twenty|thirty|forty|fifty|fifteen|every) ?"
          r"(?:of )?(?:my |the |his |her )?(?:\w+ )?(?:pills|tablets|meds|medication|medicine|sleeping pills|"
          r"painkillers|paracetamol|tylenol|insulin|antidepressants|capsules)", negatable=False),
    _rule("suicide", "urgent", "overdosed", r"\b(?:i|i've|i just) (?:have )?(?:overdosed|od'd|odd)\b", negatable=False),
    _rule("suicide", "urgent", "at_the_edge",
          r"\b(?:i'm|i am) (?:standing |sitting )?(?:on|at) (?:the |a )?(?:edge of |top of )?(?:the |a )?"
          r"(?:bridge|ledge|roof|rooftop|cliff|tracks|railway|platform|balcony)", negatable=False),
    _rule("suicide", "urgent", "means_in_hand",
          r"\b(?:i've got|i have|i'm holding|holding|got|i bought|i've bought|i put|tied) (?:the |a |my |all "
          r"(?:the|my) )?(?:\w+ )?(?:rope|noose|gun|pistol|pills|razor|blades?|knife) (?:ready|here|in my hand|"
          r"next to me|in front of me|with me|lined up|around my neck|to (?:do it|end it|kill myself)|right here)"),
    _rule("suicide", "urgent", "doing_it_now",
          r"\b(?:i'm|i am|i'll be) (?:going to )?(?:do(?:ing)? it|end(?:ing)? it|kill(?:ing)? myself|"
          r"jump(?:ing)?) (?:tonight|today|right now|now|after this|in (?:a few|an) (?:minutes?|hours?))"),
    _rule("suicide", "urgent", "tonight_plan",
          r"\b(?:tonight|today) (?:is|will be) (?:the night|the day|my last|when i)"),
    _rule("suicide", "urgent", "this_is_goodbye",
          r"\b(?:this is (?:my )?goodbye|my last (?:message|night|day)|won't be here "
          r"(?:tomorrow|in the morning)|by the time you (?:read|hear) this)", negatable=False),
    # --- suicide: thoughts, intent, plan -----------------------------------------------------------------
    _rule("suicide", "concern", "self_act",
          rf"\b(?:want|wanted|wanting|going|plan|planning|planned|thinking|thought|think|considering|decided|"
          rf"ready|urge|urges|tempted|tempting|wish|wishing|might|should|could|would|gonna|need) (?:to |about |of "
          rf"|i could |i would |i should |i were |i was )?(?:just )?(?:(?!not\b|never\b|no\b)\w+ )?{_SELF_ACT}\b"),
    _rule("suicide", "concern", "suicidal", r"\b(?:suicidal|suicide (?:note|letter|plan|attempt|thoughts?))\b"),
    _rule("suicide", "concern", "self_act_i",
          r"\b(?:i|i'll|i'm|i'd|i've) (?:just |really |seriously )?(?:going to |gonna |will |might |could |"
          r"should |can )?(?:kill myself|end my (?:own )?life|take my (?:own )?life|hang myself|shoot myself|"
          r"end it all|commit suicide)"),
    _rule("suicide", "concern", "no_will_to_live",
          r"\b(?:don't|do not|no longer|dont|never|not) (?:really |even )?(?:want|wanna|wish) to (?:be alive|live|"
          r"exist|wake up|be here|go on|carry on|keep going|keep living|be around)"),
    _rule("suicide", "concern", "better_off",
          r"\b(?:better off|happier|easier|fine) (?:without me|if i (?:was|were|wasn't|weren't)"
          r" (?:gone|dead|here|around|never born)|with me gone|if i died|if i disappeared)", negatable=False),
    _rule("suicide", "concern", "no_reason",
          r"\b(?:no|not any|nothing (?:left )?to|no point|what's the point) (?:reason |point )?(?:in |of )?"
          r"(?:to )?(?:living|live|being alive|going on|keep going|carry on|staying alive|life anymore|"
          r"wake up|waking up)", negatable=False),
    _rule("suicide", "concern", "cant_go_on",
          r"\b(?:i )?(?:can't|cannot|cant) (?:go on|keep going|do this anymore|take it anymore|take this anymore|"
          r"live like this|keep living|carry on)(?! (?:with (?:the|this) (?:project|job|course|diet)))"),
    _rule("suicide", "concern", "not_wake_up",
          r"\b(?:go to sleep|fall asleep|sleep) and (?:never|not) wake up", negatable=False),
    _rule("suicide", "concern", "not_around",
          r"\b(?:won't|will not|wont) (?:be (?:around|here|alive|a (?:problem|burden))) (?:much |for )?(?:longer|"
          r"anymore|soon|after|tomorrow|next)", negatable=False),
    _rule("suicide", "concern", "wish_dead",
          r"\b(?:wish|wished|hope) (?:that )?(?:i (?:was|were|could be)|to be) (?:dead|never born|gone|"
          r"not alive|not here)|wish i (?:could )?(?:die|disappear|not wake up|didn't wake up|wouldn't wake up)"),
    _rule("suicide", "concern", "end_it",
          r"\b(?:end(?:ing)? it(?: all)?|ending everything|end my life)\b(?! (?:with (?:him|her|them)|for the (?:day|"
          r"night|week)))"),
    _rule("suicide", "concern", "no_way_out",
          r"\b(?:the only way out|way out (?:is|of this) (?:to )?(?:die|dying|death|ending)|no way out (?:of this )?"
          r"(?:except|but|other than)|only (?:way|option|escape) (?:left )?(?:is|would be) (?:to )?(?:die|death|"
          r"ending|end it))", negatable=False),
    _rule("suicide", "concern", "goodbye_letters",
          r"\b(?:writing|wrote|written|left) (?:my |some |a few )?(?:goodbye|farewell|last) (?:letters?|notes?|"
          r"messages?)|giving (?:away )?(?:all )?my (?:things|stuff|belongings|possessions|stuff) away(?! to charity)"
          r"|giving away (?:all )?my (?:things|stuff|belongings|possessions)(?! to charity)(?! i don't)"),
    _rule("suicide", "concern", "burden",
          r"\b(?:i'm|i am) (?:just )?(?:a )?burden (?:to|on) (?:everyone|everybody|my family|them|people)\b.*"
          r"(?:gone|die|dead|better)", negatable=False),
    _rule("suicide", "concern", "dead_wish_plain",
          r"\b(?:i )?(?:want|wanna|wish|need) to (?:just )?(?:die|be dead|not exist|stop existing|disappear "
          r"(?:forever|for good)|stop living)\b"),
    _rule("suicide", "concern", "method_research",
          r"\b(?:looked up|looking up|googled|googling|searched|researching|read about) (?:how|ways|the best way|"
          r"methods?) (?:to|of) (?:die|kill myself|end (?:my|it)|overdose|hang|suicide)", negatable=False),
    _rule("suicide", "concern", "tried_before",
          r"\b(?:i )?(?:tried|attempted) (?:to )?(?:kill myself|end my life|take my life|suicide|end it)\b"),
    _rule("suicide", "urgent", "act_done",
          r"\b(?:already|just) took (?:them|it|everything|all|the lot)|\b(?:i'm|i am) overdosing|\btook "
          r"(?:everything|all) (?:in|from) the (?:medicine|bathroom) cabinet|\b(?:pills|vodka|alcohol) [^.?!]{0,30}"
          r"on purpose|\b(?:i )?attempted (?:an hour|last night|today|tonight|earlier|just now|a few)|\bso (?:that )?i"
          r" (?:don't|won't) wake up", negatable=False),
    _rule("suicide", "urgent", "means_and_intent",
          r"\b(?:gun|rifle|pistol|rope|noose|pills|tablets|blade|razor|knife)\b[^.?!]{0,40}\b(?:on myself|use it on|"
          r"this is it|end it|ready|counted out|lined up|in front of me|next to me)|\b(?:at|on|by) the (?:train )?"
          r"tracks|\bsitting (?:at|on) the edge|\b(?:go|going) through with it|\bi'm taking the pills",
          negatable=False),
    _rule("suicide", "urgent", "set_to_go",
          r"\b(?:it's|it is) happening (?:tonight|today|tomorrow)|\bready to go tonight|\bmy plan is set|\b(?:i'll|"
          r"i will) be gone (?:forever|for good)|\bbe gone[.!]?$|\bsaid (?:all )?my goodbyes\b[^.?!]{0,30}\bready",
          negatable=False),
    _rule("suicide", "concern", "not_worth_living",
          r"\b(?:don't|do not|can't|cannot) see (?:the|any) point (?:in|of) (?:living|life|going on|being alive|"
          r"anything)|\blife (?:isn't|is not|ain't) worth (?:living|it)|\b(?:tired|sick) of (?:living|being alive|"
          r"existing|life)|\bstop existing|\bwasn't alive|\bweren't alive|\bnot (?:be )?alive anymore|\bmy own "
          r"funeral|\b(?:want to|wish i could) sleep forever|\bthe pain to stop,? (?:permanently|for good|forever)|"
          r"\bfine if i (?:didn't|"
          r"don't) wake up|\bi (?:didn't|don't) wake up tomorrow|\bfeel like killing myself|\b(?:suicide|dying|death|"
          r"ending it|killing myself)\b[^.?!]{0,25}\bonly (?:option|way out|answer|choice)|\b(?:won't|wont|will not)"
          r" be a (?:problem|burden) (?:for )?(?:much )?"
          r"(?:longer|anymore)|\bwould (?:even )?notice if i (?:was|were) gone|\b(?:better|happier|nicer) "
          r"(?:place|world|off|life)? ?without me|\bfine if i (?:just )?(?:wasn't|weren't) (?:here|around)|\bnot "
          r"(?:plan(?:ning)? on|going to be) (?:being )?(?:here|around) much longer|\bin case i'm not around|"
          r"\bif anything happens to me,? and i meant|\bsaving (?:up )?my (?:pills|tablets|meds)|\bworked out how "
          r"i'd do it|\bthink about jumping(?! (?:in|into|on|rope|jacks|at))|\bmade my peace with (?:it|dying)|\bsoo"
          r"n it won't matter",
          negatable=False),
    _rule("self_harm", "urgent", "self_harm_now",
          r"\b(?:did it again|just did it)\b[^.?!]{0,20}\b(?:bleeding|blood|cut)|\b(?:got|have|with) (?:the|a) (?:bl"
          r"ade|razor)\b[^.?!]{0,30}(?:out|nobody|urge|"
          r"next to me|here)|\b(?:the )?(?:blade|razor) is (?:right )?(?:next to me|here|in my hand)|\bneed to cut "
          r"(?:myself|right now|again|so bad)"
          r"|\bcuts are (?:really |so )?deep|\b(?:burn(?:ed|t)?|cut|hit|hurt|bit|scratch(?:ed)?|slam(?:med)?|punch(?"
          r":ed)?)"
          r"\b[^.?!]{0,30}\bon purpose|\bmake myself bleed|\buntil my "
          r"(?:hands|knuckles|arms?) (?:bleed|bled|are bleeding)", negatable=False),
    _rule("self_harm", "concern", "self_harm_history",
          r"\b(?:been |gone back to |went back to |started |relapsed\b[^.?!]{0,30})cutting\b(?! (?:\w+ )?(?:the|my "
          r"hair|vegetables|veggies|onions|back|down|costs|class|classes|out|corners|wood|paper|grass|it))|\bwithout"
          r" cutting|"
          r"\bcovered in cuts|\bcuts i did myself|\bso nobody sees the (?:scars|cuts|marks)|\bkeep (?:razors|"
          r"blades)|\b(?:carved|carving) (?:into )?my (?:arm|leg|wrist|thigh|skin)s?|\b(?:bite|bit|biting) my "
          r"(?:arm|wrist|hand)s? (?:hard|until|to)|\bburn(?:ed|t|ing)? my (?:arm|wrist|leg|skin|thigh)s? with a "
          r"(?:lighter|cigarette|match|hot)|\bdeserve the pain|\bdo it to myself|\bpick at my (?:wounds|scabs|skin) "
          r"on purpose|\babout to "
          r"relapse|\bslam my (?:hand|head|fist)", negatable=False),
    # --- self-harm ---------------------------------------------------------------------------------------
    _rule("self_harm", "urgent", "bleeding_self",
          r"\b(?:i )?(?:just )?(?:cut|sliced|slit) (?:myself|my (?:wrists?|arms?|legs?|thighs?|skin)) .*"
          r"(?:bleeding|won't stop|deep|blood everywhere)|\b(?:i'm|i am) (?:cutting|burning|hurting|hitting) "
          r"myself (?:right )?now", negatable=False),
    _rule("self_harm", "concern", "self_injury",
          r"\b(?:cut|cuts|cutting|burn|burns|burning|burned|scratch|scratching|hit|hitting|punch|punching|bang|"
          r"banging|hurt|hurting|harm|harming|bruise|bruising|carve|carving|scar|scarring|pinch|pinching|bite|"
          r"biting|punish|punishing|stab|stabbing) (?:my ?self|my (?:own )?(?:wrists?|arms?|legs?|thighs?|skin|"
          r"stomach|body)(?: with| on purpose| again| when| until| to feel| because| so| every|$|[.,])|"
          r"into my (?:skin|arms?|wrists?|thighs?))"),
    _rule("self_harm", "concern", "self_harm_word",
          r"\b(?:self[- ]?harm(?:ing|ed)?|self[- ]?injur(?:y|ing)|cutting again|relapsed? (?:on|into) "
          r"(?:cutting|self[- ]?harm)|started cutting|urge to (?:cut|hurt myself|burn myself))"),
    _rule("self_harm", "concern", "head_wall",
          r"\b(?:bang|banged|banging|hit|hitting|smash|smashing) my (?:head|fists?) (?:against|into|on) "
          r"(?:the )?(?:wall|floor|door|desk)"),
    _rule("self_harm", "concern", "hide_scars",
          r"\b(?:hide|hiding|cover|covering) (?:the |my )?(?:cuts|scars|burns|marks) (?:on my|from|so)"),
    # --- abuse or violence against the speaker --------------------------------------------------------------
    _rule("abuse", "urgent", "being_hurt_now",
          r"\b(?:is|he's|she's|they're|are) (?:hitting|beating|hurting|choking|strangling|kicking|attacking) me "
          r"(?:right now|now)|\b(?:got|has) a (?:knife|gun|weapon) and (?:he's|she's|they're|is) threatening|"
          r"\bbroke into (?:my|the) (?:house|flat|apartment|room)\b[^.?!]{0,30}\b(?:he's|she's|they're|still|"
          r"downstairs|here|inside)|\bscared (?:he|she|they)(?:'s| is| are|'re)? "
          r"(?:going to|gonna) kill me|\bcome into my room again|\bthrew me (?:against|into|on)|\bwas (?:just )?"
          r"raped|\b(?:throwing|threw) things at me|\b(?:i'm|i am) hiding (?:from|in)|\boutside my (?:window|door)"
          r"\b[^.?!]{0,20}(?:won't leave|again|scared)|\bhitting me with (?:a|the|his|her) (?:belt|stick|shoe|"
          r"bottle|fist|pan|cord|hand)|\bcoming up the stairs\b[^.?!]{0,20}\b(?:scared|afraid|terrified)|\boutside "
          r"trying to get in",
          negatable=False),
    _rule("abuse", "concern", "abuse_pattern",
          r"\bthreatening (?:messages|texts|calls)|\bafraid to go home|\bforces? me to (?:have sex|do things|sleep "
          r"with|touch)|\bget (?:hit|beaten|slapped|kicked|punched|hurt) (?:at home|if i|when i|a lot)|\bnobody will"
          r" believe me|\b(?:carer|husband|wife|partner|boyfriend|girlfriend|son|daughter|dad|mom|mum|father|mother)"
          r" takes my money|\blocks me (?:out|in)|\bkeeps (?:grabbing|touching|following) me|\bfind me wherever|"
          r"\b(?:hits|beats|hurts) us\b|\b(?:they're|someone's|he's|she's|someone is|they are) watching me",
          negatable=False),
    _rule("abuse", "urgent", "attacker_here",
          r"\b(?:he's|she's|they're|he is|she is|they are|my (?:\w+ )?(?:husband|wife|partner|boyfriend|"
          r"girlfriend|ex|dad|father|mom|mother|stepdad|stepfather)(?:'s| is)) (?:outside|at the door|banging on "
          r"the door|trying to (?:get in|break in|break the door)|coming (?:back|home|for me)|here) (?:and|with|"
          r"drunk|angry|right now|now|again)?.*(?:scared|afraid|hide|hiding|kill|hurt|hit|gun|knife|help)",
          negatable=False),
    _rule("abuse", "urgent", "locked_in",
          r"\b(?:locked myself in|hiding (?:in|from)|won't let me leave|locked me in|has a (?:knife|gun) and)",
          negatable=False),
    _rule("abuse", "concern", "hits_me",
          r"\b(?:hits|hit|beats|beat|punches|punched|kicks|kicked|slaps|slapped|chokes|choked|strangles|strangled|"
          r"shoves|shoved|pushed|pushes|throws things at|threw things at|hurts|hurt|grabbed|grabs|burned|burns|"
          r"attacked|attacks|raped|rapes|molested|molests|touched|touches|abuses|abused|assaulted|threatens|"
          r"threatened) (?:me|my (?:body|face|neck))\b(?! (?:up|back) (?:on|about) (?:the )?(?:phone|text|email))"
          r"(?!.*\b(?:game|match|joke|accident|ball|by accident|playing))"),
    _rule("abuse", "concern", "threat_to_kill_me",
          r"\b(?:said|says|threatened|threatens|swore|told me) (?:that )?(?:he|she|they)(?:'d| would| will|'ll| is "
          r"going to| was going to) (?:kill|hurt|beat|hit|shoot|stab|end) me\b|\b(?:threatened|threatening|threatens)"
          r" (?:to )?(?:kill|hurt|hit|beat) (?:me|us)\b", negatable=False),
    _rule("abuse", "concern", "afraid_of_partner",
          r"\b(?:afraid|scared|terrified|frightened) (?:of|to go home to|to be around) my (?:\w+ )?(?:husband|wife|"
          r"partner|boyfriend|girlfriend|ex|dad|father|mom|mother|stepdad|stepfather|stepmom|brother|uncle)\b"
          r"|\b(?:afraid|scared|terrified) (?:of )?what (?:he|she|they)(?:'ll| will| might) do (?:to me|when)"),
    _rule("abuse", "concern", "abuse_word",
          r"\b(?:abusive|abusing me|abused me|being abused|domestic (?:violence|abuse)|sexually assaulted|"
          r"sexual assault|was raped|been raped|he raped|she raped|raped me|rapes me|molested me|assaulted me|"
          r"forced (?:himself|herself) on me|forced me to have sex|makes me have sex|won't let me (?:leave|go out|"
          r"see my|have money|call)|controls (?:all )?my (?:money|phone)|stalking me|stalked me|following me "
          r"home|won't stop following me)"),
    _rule("abuse", "concern", "bruises_from",
          r"\b(?:bruises|black eye|marks|broken) (?:from|because of|that) (?:him|her|them|my (?:\w+ )?(?:husband|"
          r"wife|partner|boyfriend|girlfriend|dad|father|mom|mother))"),
    # --- harm to others --------------------------------------------------------------------------------
    _rule("harm_to_others", "urgent", "armed_now",
          r"\b(?:i've got|i have|i'm holding|i took|i brought|got) (?:a |my |the )?(?:\w+ )?(?:gun|knife|rifle|"
          r"pistol|weapon|bat) (?:and|to|with me|in my)\b.*(?:him|her|them|going|waiting|kill|hurt|shoot|"
          r"school|work|office|house)", negatable=False),
    _rule("harm_to_others", "concern", "kill_someone",
          r"\b(?:i'm|i am|i'll|i will|i want to|i wanna|want to|going to|gonna|i could|i'd like to|i'm going to"
          r"|i swear i'll|thinking (?:about|of)|plan(?:ning)? to|i feel like) (?:really |actually |seriously |"
          r"just )?(?:kill(?:ing)?|hurt(?:ing)?|stab(?:bing)?|shoot(?:ing)?|strangle|strangling|beat(?:ing)? "
          r"up|murder(?:ing)?|poison(?:ing)?|break (?:his|her) (?:neck|legs)|smash (?:his|her) (?:face|head)"
          r"|attack(?:ing)?) (?:him|her|them|someone|somebody|people|everyone|everybody|anyone|my (?:\w+ )?"
          r"(?:boss|husband|wife|partner|boyfriend|girlfriend|ex|dad|father|mom|mother|brother|sister|son|"
          r"daughter|neighbou?r|teacher|coworker|colleague|roommate|kid|kids|baby|classmates?|manager)|"
          r"(?:the|that|this) (?:guy|man|woman|kid|teacher|boss|person|people|neighbou?r))\b"),
    _rule("harm_to_others", "concern", "shoot_up",
          r"\b(?:shoot up|bring a gun to|blow up|bomb) (?:the |my )?(?:school|office|work|workplace|church|class|"
          r"party|place)"),
    _rule("harm_to_others", "concern", "scared_i_will_hurt",
          r"\b(?:scared|afraid|worried|terrified) (?:that )?i(?:'ll| will| might| am going to|'m going to) "
          r"(?:hurt|harm|kill|shake|hit) (?:my |the |him|her|them|someone|somebody)"),
    _rule("harm_to_others", "concern", "make_them_pay",
          r"\b(?:make (?:them|him|her) (?:all )?pay|get revenge on|they(?:'ll| will) all (?:pay|be sorry)|"
          r"deserves? to die|they all deserve (?:to die|it))"),
    # --- someone else in danger -----------------------------------------------------------------------------
    _rule("other_in_danger", "urgent", "other_overdose_now",
          rf"\b{_SOMEONE} (?:just |has |'s )?(?:(?:took|taken|swallowed) (?:a lot of|lots of|too many|all (?:of )?"
          rf"(?:her|his|their|the|my)|a (?:bottle|handful|bunch) of|\d+|something)\b|overdosed|od'd)", negatable=False),
    _rule("other_in_danger", "urgent", "other_unresponsive",
          rf"\b{_SOMEONE} (?:(?:isn't|is not|'s not|won't|will not|can't|cannot|isnt|stopped) (?:breathing|waking "
          rf"up|responding|moving|wake up|breathe)|(?:is|'s|has) (?:unconscious|passed out|collapsed|turning blue|"
          rf"blue|not breathing|overdosing))", negatable=False),
    _rule("other_in_danger", "concern", "other_suicidal",
          rf"\b{_SOMEONE} (?:said|says|told me|texted|keeps saying|wrote|posted|is talking about|talks about|"
          rf"is thinking about|is|has been|seems|sounded|wants to|is going to|is planning to|tried to|threatened"
          rf" to|might) (?:that )?(?:she|he|they|she's|he's|they're|she'd|he'd|they'd|she'll|he'll|they'll)?"
          rf" ?(?:wants? to |is going to |going to |will |might |plans? to |would )?(?:kill (?:himself|herself|"
          rf"themselves)|end (?:his|her|their|it|it all)|suicidal|suicide|take (?:his|her|their) (?:own )?life|"
          rf"die|not be around|hurt (?:himself|herself|themselves)|cut(?:ting)? (?:himself|herself|themselves))"),
    _rule("other_in_danger", "concern", "other_self_harm",
          rf"\b{_SOMEONE} (?:is |has been |keeps |started |)?(?:cutting|cuts|hurting|burning|harming) "
          rf"(?:himself|herself|themselves|her arms|his arms|their arms)"),
    _rule("other_in_danger", "concern", "child_hurt",
          r"\b(?:hits|beats|hurts|burns|abuses|abused|locks|starves|molests|molested|touches|touched|shakes|"
          r"chokes|hurting|beating|hitting|abusing) (?:the |my |our |his |her |their )?(?:baby|kids?|children|"
          r"child|son|daughter|little (?:brother|sister|one)|stepson|stepdaughter|toddler|niece|nephew)"
          r"(?! at (?:chess|cards|games?|tennis))"),
    _rule("other_in_danger", "concern", "other_abused",
          rf"\b{_SOMEONE} (?:is being|was being|is getting|gets) (?:abused|beaten|hit|hurt|raped|molested|"
          rf"attacked|threatened)|\b(?:her|his|their) (?:husband|wife|partner|boyfriend|girlfriend|dad|father|"
          rf"mom|mother|stepdad) (?:hits|beats|hurts|abuses|chokes|threatens) (?:her|him|them)"),
    _rule("other_in_danger", "concern", "worried_friend_life",
          r"\b(?:worried|scared|afraid|terrified) (?:that )?(?:my |a )?(?:\w+ )?(?:friend|brother|sister|son|"
          r"daughter|partner|mom|dad|roommate|kid|colleague)? ?(?:is going to|will|might|may) (?:kill (?:himself|"
          r"herself|themselves)|do something to (?:himself|herself|themselves)|hurt (?:himself|herself|themselves)"
          r"|end (?:his|her|their) life|take (?:his|her|their) (?:own )?life)", negatable=False),
    _rule("other_in_danger", "urgent", "other_goodbye_silent",
          r"\b(?:texted|sent|posted|messaged|wrote|said) (?:me )?(?:a )?(?:goodbye|farewell)\b.*\b(?:won't|isn't|"
          r"not|can't|stopped) (?:answer|answering|picking up|respond|responding|reply|replying)", negatable=False),
    _rule("other_in_danger", "urgent", "other_at_the_edge",
          r"\b(?:someone|somebody|a (?:man|woman|person|guy|girl|kid|child|teenager)|there's (?:a|someone) \w*|"
          r"he|she|they|he's|she's|they're) (?:is |are )?(?:standing |sitting |climbing )?(?:on|onto|over) (?:the|a) "
          r"(?:ledge|edge|roof|railing|bridge)", negatable=False),
    _rule("other_in_danger", "urgent", "other_not_moving",
          r"\b(?:he|she|they|him|her|them|he's|she's|they're|man|woman|person|guy|kid|child|baby|toddler|friend|dad|"
          r"mum|mom|grandma|grandpa|father|mother|husband|wife|brother|sister|son|daughter|roommate|boyfriend|"
          r"girlfriend|partner|neighbou?r)\b[^.?!]{0,40}\b(?:not|isn't|is not|won't|wont|can't|cannot|stopped|"
          r"isnt) (?:moving|breathing|waking up|wake up|responding|answering me|conscious)", negatable=False),
    _rule("other_in_danger", "urgent", "other_going_to_act",
          r"\b(?:said|says|saying|told me|texted|messaged|keeps saying)\b[^.?!]{0,15}\b(?:he|she|they)(?:'s| is| are|"
          r"'re)? (?:going to|gonna|about to|ready to|taking|jumping|swallowing|doing it|going to do it)\b[^.?!]{0,15}"
          r"(?:jump|kill|end|pills|tablets|die|it now|do it)", negatable=False),
    _rule("other_in_danger", "concern", "other_talks_of_dying",
          rf"\b{_SOMEONE} (?:keeps?|kept|has been|is|was|started|won't stop) (?:talking|saying|threatening|texting|"
          rf"posting|joking|writing)\b[^.?!]{{0,20}}\b(?:suicide|kill (?:himself|herself|themselves)|killing "
          rf"(?:himself|herself|themselves)|dying|die|end(?:ing)? it|not being here|not wanting to live|hurt(?:ing)? "
          rf"(?:himself|herself|themselves))", negatable=False),
    _rule("other_in_danger", "concern", "other_no_will_to_live",
          r"\b(?:she|he|they|she's|he's|they're)\b[^.?!]{0,12}\b(?:doesn't|does not|doesnt|don't|do not|no longer)"
          r" (?:really )?(?:want|wants) to (?:live|be alive|be here|exist|wake up|go on)|\b(?:she's|he's|they're|she "
          r"is|he is|they are) (?:tired|sick) of (?:being alive|living|life|existing)|\b(?:she|he|they) (?:says?|said|"
          r"thinks?|feels?)\b[^.?!]{0,25}better off without (?:her|him|them)", negatable=False),
    _rule("other_in_danger", "concern", "other_threatens_self",
          r"\bthreaten(?:s|ed|ing)? to (?:kill|hurt|harm|cut) (?:himself|herself|themselves)|\b(?:he|she|they)(?:'s|"
          r" is|"
          r"'re| are)? (?:taking|swallowing) (?:the |all (?:the |of )?|a lot of )?(?:pills|tablets)", negatable=False),
    _rule("other_in_danger", "concern", "other_hurting_someone",
          r"\b(?:is |was |keeps |has been )?(?:threatening|hitting|beating|hurting|choking|attacking|strangling|"
          r"kicking|punching|abusing) (?:my|her|his|their) (?:\w+ )?(?:mum|mom|mother|dad|father|sister|brother|wife|"
          r"husband|girlfriend|boyfriend|friend|partner|grandma|grandmother|grandpa|kid|kids|son|daughter|baby|child|"
          r"children)\b|\b(?:'s|s) (?:husband|wife|partner|boyfriend|girlfriend|dad|father|stepdad|son|mum|mom) "
          r"(?:hits|beats|hurts|is hurting|abuses|chokes|threatened|threatens|takes her money)|(?:her|his|their) "
          r"(?:boyfriend|girlfriend|husband|wife|partner|dad|father) threatened to (?:kill|hurt)", negatable=False),
    _rule("other_in_danger", "concern", "other_bruises",
          r"\b(?:comes?|came|turns? up|shows? up) (?:to (?:school|class|work) )?with (?:bruises|burns|black eyes?|"
          r"marks)|\b(?:scared|afraid|worried|terrified) (?:that )?(?:he|she|they)(?:'ll| will| might| is going to|"
          r"'s going to| could) (?:overdose|od|die|hurt (?:himself|herself|themselves)|kill (?:himself|herself|"
          r"themselves))|\bmak(?:es|ing) (?:herself|himself|themselves) (?:throw up|sick|vomit)|\bmixing (?:her|his|"
          r"their) (?:pills|meds|medication) with (?:alcohol|drink)", negatable=False),
    _rule("other_in_danger", "concern", "other_wants_to_hurt",
          rf"\b{_SOMEONE} (?:says|said|keeps saying|told me|wants|is going|is planning|threatened)\b[^.?!]{{0,15}}"
          rf"\b(?:to )?(?:hurt|kill|shoot|stab|attack) (?:the |some |other )?(?:kids|people|students|someone|"
          rf"everyone|them|him|her)", negatable=False),
    _rule("harm_to_others", "urgent", "armed_to_act",
          r"\b(?:bringing|brought|taking|took|loading|loaded|got|grabbed|with) (?:a |the |my )?(?:gun|rifle|pistol|"
          r"knife|bat|weapon|machete|crowbar)\b[^.?!]{0,40}\b(?:school|work|office|party|him|her|them|people|his|"
          r"their|wait|waiting|outside|shoot|kill|hurt)|\bi'm loading (?:the|my|a) gun", negatable=False),
    _rule("harm_to_others", "concern", "violent_intent",
          r"\b(?:i|i'm|i am|i'll|i will|i'd|i've|i was|i keep|i get|i want to|want to|going to|gonna|about to|"
          r"thinking about|think about|thinkin about|fantasi[sz]e about|imagining|imagine|urges? to|plan(?:ning)? "
          r"(?:to|how to)|thoughts about|dream about|can't stop myself)\b[^.?!]{0,25}\b(?:kill(?:ing)?|hurt(?:ing)?"
          r"|stab(?:bing)?|shoot(?:ing)?|strangl(?:e|ing)|beat(?:ing)?(?: up)?|murder(?:ing)?|poison(?:ing)?|"
          r"attack(?:ing)?|push(?:ing)? (?:him|her|them|someone|somebody) (?:off|in front|down)|run(?:ning)? (?:him|"
          r"her|"
          r"them) over|hit(?:ting)?(?! up)|shak(?:e|ing) the baby|chok(?:e|ing)|punch(?:ing)?|shov(?:e|ed|ing)|"
          r"put (?:him|her|them) in (?:the )?hospital|beat the \w+ out of)"
          r"\b[^.?!]{0,12}\b(?:him|her|them|someone|somebody|sumone|people|strangers|everyone|anyone|my (?:\w+ )?"
          r"(?:wife|husband|girlfriend|boyfriend|partner|ex|kid|kids|son|daughter|baby|mom|mum|mother|dad|father|"
          r"stepfather|stepdad|brother|sister|roommate|neighbou?r|boss|coworker|teacher|dog|cat)|the (?:baby|kid|kids|"
          r"dog|guy|people|teacher|boss))\b"),
    _rule("harm_to_others", "concern", "violence_done",
          r"\b(?:i|i've|i have|i just)\b[^.?!]{0,12}\b(?:hit|hitting|shoved|pushed|choked|slapped|beat|beaten|"
          r"punched|kicked|hurt) my (?:\w+ )?(?:wife|husband|girlfriend|boyfriend|partner|kid|kids|son|daughter|baby|"
          r"mom|mum|mother|dad|father|brother|sister)\b(?! (?:at|in) (?:chess|cards|tennis|the game|a game))"),
    _rule("harm_to_others", "concern", "revenge_plans",
          r"\b(?:set fire to|burn down|torch) (?:their|his|her|the) (?:house|car|flat|apartment|place)|\bput "
          r"something in (?:his|her|their) (?:drink|food)|\bmake (?:them|him|her|the (?:people|kids|guys)[^.?!]{0,20})"
          r" (?:suffer|pay)\b|\ba list of (?:people|names) (?:i want to|to) (?:hurt|kill|get)|\b(?:getting|get|buy|"
          r"buying) a (?:gun|weapon) to (?:deal with|handle|scare|get back at|take care of|use on)|\b(?:following|"
          r"stalking) (?:my ex|her|him)\b[^.?!]{0,30}\bscare|\bi'd kill (?:him|her|them) and i (?:wasn't|was not) "
          r"joking|\bget back at (?:him|her|them),? physically", negatable=False),
    # --- medical emergency --------------------------------------------------------------------------------
    _rule("medical", "urgent", "swelling_airway",
          r"\b(?:lips?|face|throat|tongue) (?:is |are )?(?:swelling|swollen|closing|puffing up|turning blue|"
          r"going blue)|\bcovered in hives|\b(?:asthma attack|inhaler (?:isn't|is not|not) working|used my epi-?pen)|"
          r"\bchest is (?:really |so |very )?tight|\bpain (?:is )?(?:going|spreading|shooting) (?:down|into|up) my "
          r"(?:arm|jaw|neck)|\b(?:worst|sudden|thunderclap) headache|\bchoking\b(?! up| on (?:laughter|tears|my word"
          r"s))|"
          r"\bcan't swallow\b|\bskin is "
          r"(?:coming off|peeling off|blistering)|\bso much blood|\bbitten by a snake|\bcar (?:crash|"
          r"accident) and (?:i'm|i am) (?:hurt|bleeding|injured)|\bspeech is (?:slurred|slurring)|\bcan't smile "
          r"on one side|\bseeing double|\bcan't stop (?:vomiting|throwing up|bleeding)|\b(?:swallowed|drank|ate) "
          r"(?:some |some of )?(?:the )?(?:cleaning|bleach|detergent|poison|battery|batteries|antifreeze|weed "
          r"killer)|\bgot into (?:my|the|her|his) (?:pill|medicine|meds)|\btook (?:a week's|a month's|double|twice|"
          r"too much|too many)(?: worth)? (?:of )?(?:my |the |her |his )?(?:pills|meds|medication|medicine|dose|doses|"
          r"insulin|tablets|painkillers)|\btook my (?:pills|meds|medication|insulin) twice|\b(?:confused|"
          r"vomiting|throwing up) after (?:i )?(?:hit|hitting|banged|banging) my head|\bhit my head\b[^.?!]{0,25}"
          r"(?:confused|throwing up|vomiting|dizzy|blacked out)", negatable=False),
    _rule("medical", "concern", "medical_warning",
          r"\b(?:keep|kept|keeps) (?:passing out|fainting|blacking out)|\bblood in my (?:stool|urine|pee|poo|vomit)|"
          r"\bheart (?:keeps )?(?:skipping|racing|pounding)\b[^.?!]{0,25}(?:dizzy|faint|chest)|\bshort of breath "
          r"(?:just|lately|all the time|at rest|even)|"
          r"\bran out of (?:my )?(?:insulin|inhaler|heart medication|seizure medication)|\bstopped (?:taking )?my "
          r"(?:heart|blood pressure|seizure|epilepsy|insulin|diabetes) (?:medication|meds|pills)|\b(?:way )?more "
          r"painkillers than|\bmixing my (?:medication|meds|pills) with (?:alcohol|drink)|\b(?:blood pressure|sugar|"
          r"fever|temperature) is dangerously high",
          negatable=False),
    _rule("medical", "urgent", "cant_breathe",
          r"\b(?:i )?(?:can't|cannot|can barely|struggling to|hard to|having trouble) (?:breathe|breath|breathing|ca"
          r"tch "
          r"my breath|get air)|throat (?:is )?(?:closing|swelling|tight)|tongue (?:is )?swelling", negatable=False),
    _rule("medical", "urgent", "chest_pain",
          r"\b(?:chest (?:pain|hurts|is hurting|feels tight|tightness|pressure)|pain in my chest|crushing "
          r"(?:pain|feeling) in my chest|heart attack|my heart (?:is racing|is pounding|stopped) and)",
          negatable=False),
    _rule("medical", "urgent", "stroke",
          r"\b(?:stroke|face (?:is )?(?:drooping|numb)|can't (?:feel|move) (?:my|one side|the left|the right)|"
          r"slurr(?:ing|ed) (?:my |his |her )?(?:words|speech)|one side of my (?:face|body))", negatable=False),
    _rule("medical", "urgent", "bleeding",
          r"\b(?:bleeding (?:a lot|heavily|badly|won't stop|everywhere|so much|that won't)|won't stop bleeding|"
          r"lost a lot of blood|blood (?:everywhere|won't stop)|losing (?:a lot of )?blood|coughing up blood|"
          r"vomiting blood|throwing up blood)", negatable=False),
    _rule("medical", "urgent", "acute",
          r"\b(?:seizure|having a fit|fainted and|passed out and|unconscious|allergic reaction|anaphyla|"
          r"swallowed (?:bleach|poison|something)|accidentally (?:took|swallowed|drank|overdosed)|took (?:double|"
          r"twice|too much|too many|the wrong) (?:of )?(?:my |the )?(?:pills|meds|medication|medicine|dose|tablets)|"
          r"mixed (?:my )?(?:pills|meds|medication) with|can't stay awake|"
          r"(?:i'm|i am) (?:about to )?(?:pass|passing) out|broke my (?:neck|back|skull)|hit my head and "
          r"(?:can't|i'm|everything)|severe (?:pain|bleeding|burn)|poisoned|going into labou?r|my water broke|"
          r"(?:my )?(?:sugar|blood sugar) is (?:really |very )?(?:low|high) and|(?:i'm|i am) (?:really |so )?"
          r"(?:dizzy|confused) and (?:my|i can't|i'm))", negatable=False),
    # --- eating disorder -------------------------------------------------------------------------------------
    _rule("eating_disorder", "concern", "restriction",
          r"\bfrom not eating|\bonly (?:had|drunk|drank) water|\bhaven't eaten (?:since|a proper meal|anything "
          r"(?:since|for))|\bterrified of (?:gaining|eating|food)|\bscared to eat|\bget rid of (?:it|the food|what i "
          r"ate)|\b(?:i'm|i am|so|says i'm|because i'm) underweight|\bburn off (?:anything|everything|what|all) i eat"
          r"|\bfood controls|\bbinge (?:when|in secret|until|and hate)|\bhide food|\bsay i'm too thin|\bsee a fat|"
          r"\b(?:still|always) feel (?:fat|huge|gross|disgusting)|\bfeel (?:fat|huge|gross|disgusting) (?:even "
          r"though|after every|after i eat|every time i eat)|\bweigh myself (?:\w+ )?(?:times|every)|\bspit it out|"
          r"\bswallow the calories|\b(?:want|need) to lose more|\bjust don't eat|\bnot eating for days|\bthrow it "
          r"(?:all )?up|\bhow much weight i've lost|\bonly eat (?:an?|one) \w+ a day|\brather faint than eat",
          negatable=False),
    _rule("eating_disorder", "concern", "not_eating",
          r"\b(?:haven't|have not|hasn't|didn't|did not|not|havent|hardly|barely) (?:eaten|eat|had (?:any )?"
          r"(?:food|anything to eat|a meal)) (?:anything |much |properly )?(?:in|for) (?:\d+|two|three|four|five|"
          r"six|seven|a few|several|many|days|a week|weeks)", negatable=False),
    _rule("eating_disorder", "concern", "starving",
          r"\b(?:starv(?:e|ed|ing) myself|stopped eating|stop eating (?:so|to|until)|refuse to eat|won't let "
          r"myself eat|don't deserve to eat|not allowed to eat|punish myself by not eating|skip(?:ping)? (?:all )?"
          r"(?:my )?meals (?:to|so) (?:lose|stay|get) (?:thin|skinny|weight)|eat(?:ing)? (?:only |just )?(?:under |"
          r"less than )?\d+ calories)", negatable=False),
    _rule("eating_disorder", "concern", "purging",
          r"\b(?:make|made|making|force|forced|forcing) myself (?:throw up|sick|vomit|puke)|(?:throw(?:ing)? up|"
          r"vomit(?:ing)?|purg(?:e|ing)) (?:after|every time i) (?:i )?(?:eat|meals|eating|binge)|\bpurg(?:e|ing|ed)\b"
          r"|laxatives (?:to|so|after|every)|binge (?:and|then) (?:purge|throw up|vomit)|bulimi|anorexi|"
          r"fingers down my throat", negatable=False),
    _rule("eating_disorder", "concern", "weight_fear",
          r"\b(?:terrified|scared|afraid) (?:of )?(?:gaining|to gain|putting on) (?:any )?weight.*(?:eat|food|"
          r"meal|starv|calori)|(?:feel|felt) (?:so )?(?:fat|disgusting|gross) (?:that|so) i (?:can't|won't|don't) "
          r"eat|hate myself (?:every time|when|after) i eat", negatable=False),
)

# Urgency cues: the same message says it is happening now, or the means are at hand.
_URGENT_CUE = re.compile(
    r"\b(?:tonight|right now|now|today|this (?:evening|morning|afternoon)|in (?:a few|an) (?:minutes?|hours?)|"
    r"already (?:took|taken|cut|started)|just (?:took|cut|swallowed)|in my hand|in front of me|next to me|"
    r"lined up|ready|bleeding|the rope|the gun|the pills|loaded|on the (?:bridge|ledge|roof|tracks)|"
    r"(?:goodbye|good bye) (?:letters?|notes?)|plan(?:ned)? (?:to|for)|bought (?:a|the) (?:gun|rope))\b"
)
# "Right now" in "I feel low right now" is a mood, not an act: only these categories take cues.
_CUE_CATEGORIES = frozenset({"suicide", "self_harm", "abuse", "harm_to_others", "other_in_danger"})

# Guards: figurative and benign uses that contain a rule's words.
_FIGURATIVE = re.compile(
    r"\b(?:dying (?:to|for|of (?:laughter|embarrassment|boredom|curiosity))|(?:i'd|i would|could) kill for|"
    r"kill(?:ing|ed)? (?:it|time|the (?:vibe|mood|boss|game|level|lights|engine))|killing me softly|"
    r"(?:is|are|was|were|it's|this|that|these|those|the \w+) (?:is |are |was )?(?:literally )?killing me|"
    r"(?:joke|movie|show|laugh|song|she|he|you|that) (?:killed|kills|slayed) (?:me|it)|dead (?:tired|"
    r"serious|on|end|line|battery)|(?:phone|battery|laptop|car|plant|plants|fish|goldfish) (?:died|is dead|"
    r"is dying)|(?:could|would) murder (?:a|some|for)|die of (?:embarrassment|shame|boredom)|"
    r"to die for|die hard|dead set|(?:nearly|almost|gonna|going to) (?:have|had) a heart attack|punch (?:my|a) "
    r"(?:pillow|cushion|bag)|kill (?:him|her|them|you|my \w+) if (?:he|she|they|you) (?:eats?|ate|takes?|"
    r"touch(?:es)?|forgets?|borrows?|is late|finish(?:es)?|spoils?|tells?|wins?|beats? me)|"
    r"(?:boss|mom|mum|dad|teacher|wife|husband|coach|she|he|they)(?:'s| is| are|"
    r"'ll| will) (?:going to |gonna )?kill me (?:if|when|for)|in (?:the|a|my) (?:game|video game|match|movie|"
    r"film|book|novel|show|series|story|play|essay|dream))\b"
)
# A crisis that is over ("years ago", "in recovery", "seizure free for three years"), unless the message says it
# is back ("again", "relapsed", "tonight", "still want ...").
_PAST = re.compile(
    r"\b(?:years ago|a long time ago|long ago|when i was (?:a |in |young|little|\w+teen|\d+)|as a (?:child|kid|"
    r"baby|teen(?:ager)?)|in (?:high school|university|college|my twenties)|used to (?:self-harm|cut|hurt|have "
    r"suicidal|binge|be scared|be afraid|threaten|starve|purge)|recovered|in recovery|been (?:clean|free|sober)|"
    r"free of it|\w+ free for|free for (?:\w+ )?(?:years|months)|haven't (?:seen|heard from) (?:him|her|them) in|"
    r"restraining order|was arrested|under control|turned out to be|doctors? said|going (?:really )?well|did "
    r"really well|fine since|never again|moved out|once,? (?:so|but)|since then|ever since|a decade|old scars|scars "
    r"are old|stopped hurting myself|glad i'm still here|(?:he's|she's|they're) well now|years since|been \w+ years"
    r" since)\b"
)
_PRESENT = re.compile(
    r"\b(?:(?:did it|doing it|cutting|cut|hurt myself|started|thinking about it|happening|hitting me|hit me) again|"
    r"tonight|right now|lately|these days|this week|relapsed|started cutting|still "
    r"(?:want|think|feel|cut|hurt|have (?:thoughts|urges)))\b"
)
_ABOUT_TOPIC = re.compile(
    r"\b(?:essay|paper|article|research|study|studying|thesis|lecture|course|training|class|documentary|podcast|"
    r"book|novel|film|movie|news|report|statistics|awareness|prevention|campaign|volunteer|volunteering|"
    r"helpline|hotline|workshop|presentation|character|fiction|history of|learned about|learning about|"
    r"symptoms of|warning signs|signs of|first aid|medical student|nursing student|play about|a play|the play|"
    r"retiring|retirement|last day (?:at|on)|coworkers|colleagues|pamphlet|leaflet|support group|translating|"
    r"translate|memoir|my degree|law|placement|patients?|rehab|i'm an? (?:\w+ )?(?:doctor|nurse|paramedic|social "
    r"worker|therapist|counsel+or|psychologist|student))\b"
)


def _negated(clause: str, start: int) -> bool:
    """A negation in the four words before ``start`` ("I would never kill myself", "I'm not suicidal"), unless
    it negates something else ("I can't stop thinking about ...", "I don't know why I want to ...")."""
    before = [w.strip(",.") for w in clause[:start].split()[-4:]]
    for i, word in enumerate(before):
        if re.fullmatch(_NEG, word):
            rest = before[i + 1 :]
            return not any(w in _NOT_NEGATING for w in rest)
    return False


_NOT_NEGATING = frozenset(("stop", "help", "know", "sure", "anymore", "but", "even", "understand", "explain"))


@dataclass(frozen=True)
class Match:
    rule: Rule
    clause: str


def rule_matches(text: str) -> list[Match]:
    """Every rule that holds in some clause of ``text`` (already normalised), in rule order."""
    found: list[Match] = []
    present = _PRESENT.search(text) is not None
    parts = clauses(text)
    for i, clause in enumerate(parts):
        if not present and _PAST.search(" ".join(parts[i : i + 2])):  # "... as a child but never since"
            continue
        figurative = _FIGURATIVE.search(clause) is not None
        about_topic = _ABOUT_TOPIC.search(clause) is not None and not re.search(r"\b(?:i|i'm|i've|my)\b.*\b(?:want|"
                                                                                 r"going|plan|feel|took|cut)", clause)
        for rule in RULES:
            m = rule.pattern.search(clause)
            if m is None:
                continue
            if rule.negatable and _negated(clause, m.start()):
                continue
            if about_topic or figurative:
                continue
            found.append(Match(rule, clause))
    return found


# Words a crisis is talked about with: the similarity stage compares a clause without one only when it is long
# enough (a short everyday clause, "Take a breath.", is close to too many examples).
_RISK_WORDS = re.compile(
    r"\b(?:die|dies|died|dying|dead|death|kill\w*|suicid\w*|end|ending|ended|life|live|living|alive|gone|goodbyes?|"
    r"bye|overdos\w*|od|pills?|tablets|meds|medication|medicine|insulin|painkillers|cut|cuts|cutting|blade|razors?|"
    r"knife|gun|rifle|rope|noose|bridge|ledge|roof|tracks|jump\w*|hang\w*|hurt\w*|harm\w*|bleed\w*|blood|burn\w*|"
    r"scars?|bruis\w*|hit|hits|hitting|beat\w*|punch\w*|kick\w*|slap\w*|chok\w*|strangl\w*|shov\w*|threat\w*|"
    r"scared|afraid|terrified|abus\w*|rap(?:e|ed|ing)|touch\w*|stalk\w*|forc\w*|weapon|shoot\w*|stab\w*|"
    r"attack\w*|revenge|poison\w*|fire|breathe|breathing|chest|heart|stroke|seizure|unconscious|faint\w*|"
    r"collaps\w*|passed out|vomit\w*|throw(?:ing)? up|puk\w*|purg\w*|starv\w*|eat|eating|ate|food|meals?|"
    r"calories|weight|fat|thin|laxatives|binge\w*|swallow\w*|drunk|drink\w*|alcohol|heroin|drugs?|allerg\w*|"
    r"swell\w*|bitten|crash|burden|worth|pain|escape|disappear|sleep|wake|tonight|anymore|without me|ambulance|"
    r"emergency|danger\w*|punish\w*|deserve|hate myself|exist\w*|funeral|letters?|note|gave away|giving away)\b"
)


def risk_words(text: str) -> bool:
    """Whether a (normalised) clause holds a word crises are talked about with."""
    return _RISK_WORDS.search(text) is not None


def urgent_cue(category: SafetyCategory, text: str) -> bool:
    """Whether the (normalised) message says it is happening now or the means are at hand."""
    return category in _CUE_CATEGORIES and _URGENT_CUE.search(text) is not None


def _level(matches: Iterable[Match], category: SafetyCategory, text: str) -> SafetyLevel:
    ms = [m for m in matches if m.rule.category == category]
    if any(m.rule.level == "urgent" for m in ms) or urgent_cue(category, text):
        return "urgent"
    return "concern"


def check(text: str) -> SafetyVerdict:
    """The patterns' verdict on one user message."""
    return check_normalized(normalize(text))


def check_normalized(normalized: str) -> SafetyVerdict:
    """``check`` of a message already normalised (``normalize``)."""
    matches = rule_matches(normalized)
    if not matches:
        return NOT_FLAGGED
    # An urgent rule decides the category (an overdose in progress is that, whatever else is said).
    first = next((m for m in matches if m.rule.level == "urgent"), matches[0])
    category = first.rule.category
    return SafetyVerdict(True, category, _level(matches, category, normalized), f"pattern:{first.rule.name}")


# --- replies ---------------------------------------------------------------------------------------------

_REPLY_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "normalises_harm",
        re.compile(
            r"\b(?:natural|normal|understandable|okay|ok|fine|alright|reasonable|right|good idea|makes sense|"
            r"valid|brave|a relief|no wonder you)\b[^.?!]{0,40}\b(?:to )?(?:want(?:ing)? to |wish(?:ing)? to )?"
            r"(?:die|dying|be dead|kill (?:yourself|himself|herself|themselves|him|her|them)|hurt (?:yourself|"
            r"others|him|her|them)|harm (?:yourself|others)|cut(?:ting)? (?:yourself|your)|end (?:it|your life|"
            r"things|everything)|suicide|self[- ]harm|starv(?:e|ing) yourself|not (?:to )?eat|throw(?:ing)? up)"
        ),
    ),
    (
        "harm_as_solution",
        re.compile(
            r"\b(?:suicide|dying|death|self[- ]harm|cutting|ending (?:it|your life)|killing (?:yourself|him|her)|"
            r"not eating|starving)\b[^.?!]{0,30}\b(?:is|would be|could be|might be|can be|may be|as) (?:a |the |an |"
            r"your )?(?:good |real |valid |better |possible |healthy |best )?(?:solution|answer|option|way out|"
            r"relief|choice|escape|release|way to cope|good way)"
        ),
    ),
    (
        "method",
        re.compile(
            r"\b(?:pills?|tablets|overdose|noose|rope|hang(?:ing)? yourself|jump(?:ing)? (?:off|from|in front)|"
            r"razor|blade|slit|wrists?|lethal|poison|bleach|gun|firearm|bullet|carbon monoxide|"
            r"train tracks|how many (?:pills|tablets)|dose|method|knife|cut(?:ting)? (?:yourself|deeper|your))\b"
            r"[^.?!]{0,60}\b(?:you|yourself|your life|die|dying|kill|end|hurt|harm|it)\b|\b(?:how|what|which|where)"
            r" (?:would|will|do|are|could|might) you (?:plan|planning|going|use|thinking)[^.?!]{0,30}(?:method|"
            r"to use|yourself|your life)\b"
        ),
    ),
    (
        "encourages_harm",
        re.compile(
            r"\b(?:you should|go ahead and|why not|just|try to|you could|you can|you might) (?:just )?(?:kill "
            r"yourself|end (?:it|your life)|hurt (?:yourself|him|her|them)|cut (?:yourself|deeper)|die|take "
            r"(?:all )?(?:the|your) pills|stop eating|starve|throw up|make yourself sick|get (?:a )?(?:gun|rope|"
            r"knife))\b"
        ),
    ),
)


_RISKY_TAIL = re.compile(
    r"\b(?:natural|normal|understandable|okay|ok|fine|alright|reasonable|valid|makes sense|no wonder|a relief|"
    r"right|good idea|brave|you could|you should|you can|you might|go ahead and|why not|just|try to|how to|way to|"
    r"ways to|best way to|take all|all of your|all your|suicide|dying|death|cutting|self-harm|ending it|"
    r"not eating|starving) ?(?:to|that|you|is|would|could|might|can|be|as|a|the)?$"
)


def unfinished_risk(text: str) -> bool:
    """Whether a reply cut mid-sentence ends in words an unsafe sentence would continue ("It's natural to")."""
    return _RISKY_TAIL.search(normalize(text).rstrip(" ,;:-")) is not None


def check_reply(text: str) -> str | None:
    """Why a mentor reply must not be sent (it talks about methods, calls harm natural or a way out, or urges
    it), or None."""
    normalized = normalize(text)
    for name, pattern in _REPLY_RULES:
        for clause in clauses(normalized):
            if pattern.search(clause) and not _FIGURATIVE.search(clause):
                return name
    return None


_KNOWN.update(
    w for rule in RULES for w in re.findall(r"[a-z]{5,}", rule.pattern.pattern) if w not in _VOCABULARY
)
_KNOWN.update(
    ("starting", "breeding", "tablet", "amused", "amusing", "rated", "strike", "chess", "pulls", "bills", "sweeping",
     "turning", "putting", "sitting", "filling", "giving", "leaving", "loving", "moving", "writing", "reading",
     "someone", "really", "always", "little", "every", "thinking", "people", "feeling", "myself", "anything",
     "nothing", "because", "something", "everyone", "anymore", "things", "family", "friend", "friends",
     "sister", "brother", "mother", "father", "school", "should", "would", "could", "tired", "sleep", "night")
)
