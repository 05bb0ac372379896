"""Reading a question: the kind of answer it wants, its weighted words, its names, its context."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .nlp import annotate, terms
from .retrieval import Index

# --- what kind of answer a question wants -------------------------------------------------------
# Cues by wh-word; the earliest cue in the question wins, so "In which city ... when" is a place.
_KINDS: list[tuple[re.Pattern, str]] = [
    # "why ...?", "how did ...?": an explanation, answered with a sentence rather than a span
    (re.compile(r"^\s*(?:why|how)\b(?!\s+(?:many|much|long|old|large|far|big|often|tall))"), "explain"),
    (re.compile(r"\bhow\s+(?:many|much|large)\b"), "number"),
    (re.compile(r"\bwhen\b|\bhow\s+(?:long|old)\b"), "date"),
    (re.compile(r"\bwho(?:m|se)?\b"), "person"),
    (re.compile(r"\bwhere\b"), "place"),
]
# "which/what <noun phrase>": the kind of its head noun, the last noun of these that it contains
# ("Which FAW Group director ..." wants a person, "Which city's government ..." an organisation).
_HEAD_NOUNS: dict[str, str] = {
    **dict.fromkeys(
        "number amount total sum value percentage share proportion figure size count price cost".split(),
        "number",
    ),
    **dict.fromkeys("anniversary rank edition session".split(), "ordinal"),
    **dict.fromkeys("year date day month time decade century period".split(), "date"),
    **dict.fromkeys(
        """person official leader man woman people secretary governor mayor director chairman chairwoman
        president manager minister deputy head chief member representative executive founder editor author
        scientist player coach""".split(),
        "person",
    ),
    **dict.fromkeys(
        """city cities province country countries place region town district location county prefecture
        state continent area village capital""".split(),
        "place",
    ),
    **dict.fromkeys(
        """company companies organization organisation organizations organisations institute institutes
        institution institutions group firm agency body university enterprise brand department ministry
        center centre committee automaker manufacturer carmaker team party government bank school
        association council club newspaper network""".split(),
        "organisation",
    ),
}
# nouns that name a person's role: "Han Jun, Deputy Secretary of ..." and "Governor Li" are people
PERSON_NOUNS = frozenset(word for word, kind in _HEAD_NOUNS.items() if kind == "person")
# nouns that name a place or a body: "Jiaojiang District" is a place, "Party Committee" is no person
PLACE_NOUNS = frozenset(word for word, kind in _HEAD_NOUNS.items() if kind == "place")
ORG_NOUNS = frozenset(word for word, kind in _HEAD_NOUNS.items() if kind == "organisation")
_WHICH = re.compile(
    r"\b(?:which|what)\s+(?:(?:is|was|are|were)\s+(?:the\s+)?)?((?:[\w'’-]+\s+){0,5}[\w'’-]+)"
)
# words that end the noun phrase after "which/what"
_STOP_HEAD = frozenset(
    "is was were are did does do has had have will would can could should may might "
    "of in and or that who".split()
)


# entity labels each kind accepts, with how much each counts
LABELS: dict[str, dict[str, float]] = {
    "date": {"DATE": 1.0, "TIME": 0.6},
    "person": {"PERSON": 1.0, "ORG": 0.2, "NORP": 0.1},
    "place": {"GPE": 1.0, "LOC": 1.0, "FAC": 0.8, "ORG": 0.3},
    "organisation": {
        "ORG": 1.0,
        "PRODUCT": 0.6,
        "QUOTED": 0.5,
        "WORK_OF_ART": 0.4,
        "FAC": 0.4,
        "NORP": 0.3,
        "GPE": 0.3,
    },
    "number": {"CARDINAL": 1.0, "MONEY": 1.0, "QUANTITY": 1.0, "PERCENT": 1.0, "ORDINAL": 0.5, "DATE": 0.3},
    "ordinal": {"ORDINAL": 1.0, "CARDINAL": 0.3},
    "phrase": {},
    "explain": {},
}

# Follow-ups lean on the previous question: pronouns, "and ...?", "what about ...?"
_FOLLOW_UP = re.compile(
    r"\b(?:it|its|they|them|their|theirs|he|him|his|she|her|hers|this|that|these|those|"
    r"there|the\s+same)\b|^\s*(?:and|also|what\s+about|how\s+about)\b",
    re.I,
)

_ACRONYM = re.compile(r"^[A-Z0-9&]{2,6}s?$")
HISTORY_WEIGHT = 0.3  # weight of the previous question's words in a follow-up, against the question's own


@dataclass(frozen=True)
class Question:
    text: str
    kind: str
    weights: dict[str, float]  # stemmed content word -> weight (idf; less for words from history)
    named: frozenset[str]  # words the question itself (or its context) names: never the answer
    query: str  # what is sent to retrieval
    names: tuple[tuple[str, tuple[str, ...]], ...]  # capitalised words and numbers, with their stems
    head: str | None = None  # the stemmed noun a "which/what <noun>" question asks for
    counted: tuple[str, ...] = ()  # the stemmed words of what a "how many ..." question counts
    duration: bool = False  # "how long ...?" asks for a length of time, not a point in it
    # "what kind/type of <words> ...?": the stemmed words; the answer is a sort of their head noun
    kind_words: tuple[str, ...] = ()
    counted_noun: str | None = None  # the noun a "how many ..." question counts, as written ("delegates")
    asked: str | None = None  # the noun of "what was the <noun> of ...?", as written ("theme")
    # for "who is the <role> of <X> ...?": the stemmed words of the role and of X ("general", "manag";
    # "hongqi", "brand"); the answer is a person whose role the documents give as that
    role: tuple[str, ...] = ()
    role_of: tuple[str, ...] = ()


def question_kind(question: str) -> str:
    q = question.lower()
    found: list[tuple[int, str]] = []
    for pattern, kind in _KINDS:
        m = pattern.search(q)
        if m:
            found.append((m.start(), kind))
    for m in _WHICH.finditer(q):
        head = None
        for word in m.group(1).split():
            if word in _STOP_HEAD:
                break
            head = _HEAD_NOUNS.get(re.sub(r"['’]s$", "", word), head)
        if head:
            found.append((m.start(), head))
            break
    return min(found)[1] if found else "phrase"


_KIND_OF = frozenset("kind kinds type types sort sorts form forms".split())


def _up_to(words: list[str], stop: frozenset[str]) -> list[str]:
    """The words before the first stop word: the noun phrase that opens ``words``."""
    for i, word in enumerate(words):
        if word in stop:
            return words[:i]
    return words


@lru_cache(maxsize=1024)
def _noun_phrases(question: str) -> tuple[tuple[int, int], ...]:
    """spaCy's noun phrases of a question, parsed once for all the readings that need them."""
    return annotate([question])[0][1]


def _which_words(question: str) -> list[str]:
    """The words of the noun phrase a "which/what ..." question asks about, lower-cased, as spaCy's
    parse bounds it: "Which city hosted the fair?" -> ["city"], "What kind of automotive development
    did ..." -> ["kind", "of", "automotive", "development"]; [] for other questions."""
    lowered = question.lower()
    m = _WHICH.search(lowered)
    if not m:
        return []
    words = [(w.start() + m.start(1), w.group()) for w in re.finditer(r"\S+", m.group(1))]
    phrases = _noun_phrases(question)
    limit = next((e for s, e in phrases if s <= words[0][0] < e), None)
    if limit is None:
        limit = len(question)  # no noun phrase there: the words up to a verb or preposition
    if len(words) > 2 and words[0][1] in _KIND_OF and words[1][1] == "of":
        limit = next((e for s, e in phrases if s >= words[1][0]), limit)  # "kind of <the next phrase>"
        return [words[0][1], "of", *_up_to([w for pos, w in words[2:] if pos < limit], _STOP_HEAD)]
    return _up_to([w for pos, w in words if pos < limit], _STOP_HEAD)


def kind_words(question: str) -> tuple[str, ...]:
    """The stemmed words of "what/which kind (type, sort, form) of <words> ...?": "What kind of
    automotive development did ..." -> ("automot", "develop"); () for other questions."""
    words = _which_words(question)
    if not (len(words) > 2 and words[0] in _KIND_OF and words[1] == "of"):
        return ()
    return tuple(terms(" ".join(words[2:])))


def head_noun(question: str) -> str | None:
    """The noun a "which/what ..." question asks for, stemmed: "which district" -> "district", "what
    kind of automotive development" -> "develop". An answer often contains it ("Jiaojiang District")."""
    words = _which_words(question)
    if len(words) > 2 and words[0] in _KIND_OF and words[1] == "of":
        words = words[2:]
    found = terms(words[-1]) if words else []
    return found[-1] if found else None


_HOW_MANY = re.compile(r"\bhow\s+many\s+((?:[\w'’-]+\s*){1,6})")
_COUNT_STOP = _STOP_HEAD | frozenset("from at on to for by with per been be there".split())
_HOW_LONG = re.compile(r"\bhow\s+long\b")


def _counted(question: str) -> list[str]:
    m = _HOW_MANY.search(question.lower())
    return _up_to(m.group(1).split(), _COUNT_STOP) if m else []


def counted_words(question: str) -> tuple[str, ...]:
    """The stemmed words after "how many", up to the verb or preposition: "How many key projects were
    signed?" -> ("key", "project"). A number that counts something else ("three goals") answers
    another question."""
    return tuple(terms(" ".join(_counted(question))))


def counted_noun(question: str) -> str | None:
    """The noun a "how many" question counts, as written, read from spaCy's noun phrase around "many":
    "How many people attended the meeting?" -> "people" (compared by meaning with the noun after a
    number: "delegates" are "representatives"). None for "how many times", which any count of events
    answers."""
    if not _HOW_MANY.search(question.lower()):
        return None
    for s, e in _noun_phrases(question):
        words = question[s:e].split()
        if "many" in (w.lower() for w in words[:-1]):
            noun = words[-1]
            return None if noun.lower() in ("time", "times") or not terms(noun) else noun
    return None


# "what was the theme of ...?", "where is the headquarters of ...?", "who is the general manager of
# ...?": a definite description of what is asked, a relation of something named. Its noun is presumed
# to exist in the documents; when they never use it, they cannot say what it is.
_ASKED = re.compile(
    r"^\s*(?:who|what|where|which)\s+(?:is|was|are|were)\s+(?:(the|its|their|his|her)\s+)?"
    r"((?:[\w'’-]+\s+){0,3}?[\w'’-]+)(?=\s+(?:of|for|in|at|on|from|located|based)\b)",
    re.I,
)
# what the role is of: "of the Hongqi brand", up to a phrase of time or place or a clause
_ROLE_OF = re.compile(
    r"\s+(?:of|for)\s+(.+?)(?=\s+(?:at|in|during|when|while|on|after|before|since|who|that|which|until)\b"
    r"|\s*[?,;.]|\s*$)",
    re.I,
)
# nouns that say what form the answer takes rather than what is asked ("the date of", "the name of")
_FORM_NOUNS = frozenset(w for w, kind in _HEAD_NOUNS.items() if kind != "person") | frozenset(
    "name names title kind kinds type types sort form".split()
)


def asked_noun(question: str) -> str | None:
    """The noun of a definite "what/who/where is the <noun> of ...?" question, as written: "What was the
    theme of the conference?" -> "theme"; None for other questions and for nouns of form ("the date")."""
    m = _ASKED.match(question)
    if not (m and m.group(1)):
        return None  # without "the" the words may be anything: "What is Changchun famous for?"
    noun = m.group(2).split()[-1]
    lowered = noun.lower()
    return None if lowered in _FORM_NOUNS or lowered in _STOP_HEAD or not terms(noun) else noun


def role_asked(question: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """For "who is/was the <role> of <X> ...?" with a role noun ("governor", "general manager"): the
    stemmed words of the role and of X; ((), ()) for other questions. What X is can be said before the
    role too: "the Panthers head coach"."""
    m = _ASKED.match(question)
    if not (m and question.lstrip()[:3].lower() == "who" and m.group(2).split()[-1].lower() in PERSON_NOUNS):
        return (), ()
    of = _ROLE_OF.match(question, m.end(2))
    # a name before the role says what it is of too: "the Panthers head coach"
    names = [w for w in m.group(2).split() if w[0].isupper() and w.lower() not in PERSON_NOUNS]
    return tuple(terms(m.group(2))), tuple(terms(" ".join([*names, of.group(1) if of else ""])))


def last_turn(history: list[dict] | None, role: str) -> str | None:
    for turn in reversed(history or []):
        if isinstance(turn, dict) and turn.get("role") == role:
            text = message_text(turn.get("content"))
            if text.strip():
                return text
    return None


def message_text(content) -> str:
    """A chat message's text: a string, a ``{"text": ...}`` block, or a list of them."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return message_text(content.get("text", content.get("content", "")))
    if isinstance(content, list):
        return "\n".join(t for t in (message_text(part) for part in content) if t)
    return ""


def names(question: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The question's names (capitalised words) and numbers, each with its stemmed terms."""
    found = []
    text = question.lstrip()
    for i, m in enumerate(re.finditer(r"(?<![\w'’])([A-Z][\w'’-]*|\d[\w,.]*\w|\d)", text)):
        word = m.group()
        if i == 0 and m.start() == 0:
            continue  # the first word of a question is capitalised anyway
        if _ACRONYM.match(word) and not word[0].isdigit():
            continue  # an acronym may stand for words the documents spell out ("CAS")
        stems = tuple(terms(word))
        if stems:
            found.append((word, stems))
    return tuple(found)


def read_question(question: str, history: list[dict] | None, index: Index) -> Question:
    weights = {t: index.idf.get(t, index.default_idf) for t in terms(question)}
    named = set(weights)
    query = question
    previous = last_turn(history, "user")
    if previous and (_FOLLOW_UP.search(question) or len(weights) < 2):
        for t in terms(previous):
            weights.setdefault(t, HISTORY_WEIGHT * index.idf.get(t, index.default_idf))
            named.add(t)
        # a follow-up asks for something new: what was just answered is not the answer again
        named.update(terms(last_turn(history, "assistant") or ""))
        query = f"{previous} {question}"
    return Question(
        question,
        question_kind(question),
        weights,
        frozenset(named),
        query,
        names(question),
        head_noun(question),
        counted_words(question),
        bool(_HOW_LONG.search(question.lower())),
        kind_words(question),
        counted_noun(question),
        asked_noun(question),
        *role_asked(question),
    )
