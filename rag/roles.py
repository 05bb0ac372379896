"""Stage 6b: check a person against the role a question asks about ("Who was the governor of Jilin?").

News gives people with their roles: a title before the name ("Vice Governor Li Guoqiang", "CBS founder
William S. Paley") or an apposition after it ("Han Jun, Deputy Secretary of ... and Governor of Jilin
Province"). For a question that asks who holds a role, a person whose own words give that role, of what
the question names, is the answer however loosely the rest of the sentence matches; a person whose words
give another role (a vice governor for the governor, the general manager of another company) is not,
however well it matches. A person the text gives no such role keeps the ranker's verdict.
"""

from __future__ import annotations

import re

from .candidates import Candidate, sentence_text
from .nlp import terms
from .question import PERSON_NOUNS, Question
from .retrieval import Index

# words that make a role a lesser one: a vice governor is not the governor (a former one was)
LESSER = frozenset("vice deputy assistant acting associate co under".split())
# idf-weighted share of what the role is of ("of Jilin Province") that the text must give
ROLE_OF_SHARE = 0.5

# the title before a name: capitalised words, role nouns and the words that make a role lesser
_TITLE = re.compile(
    r"((?:(?:[A-Z][\w'’&.-]*|(?i:" + "|".join(sorted(LESSER | PERSON_NOUNS)) + r"))\s+){1,6})$"
)
_LESSER_STEMS = frozenset(t for w in LESSER for t in terms(w))
_OF = re.compile(r"\s+(?:of|for)\s+([^,;.]+)")
_WORD_BEFORE = re.compile(r"([\w'’-]+)[\s-]+$")


def screen(q: Question, ranked: list[Candidate], index: Index) -> list[Candidate]:
    """For a question about who holds a role: people only, without those the text gives another role;
    the ones it gives the role asked come first, marked ``verified``. Other questions: ``ranked``."""
    if not q.role:
        return ranked
    verified, rest = [], []
    for c in ranked:
        if c.label != "PERSON":
            continue  # "Who is the general manager of ...?" is not answered by a company
        verdict = role_verdict(q, c, index)
        if verdict:
            c.verified = True
            verified.append(c)
        elif verdict is None:
            rest.append(c)
    return verified + rest


def role_verdict(q: Question, c: Candidate, index: Index) -> bool | None:
    """True when the words around the person give the role asked (of what the question names), False
    when they give it as a lesser one or of something else, None when they give no such role."""
    sent = c.sentence
    local = sentence_text(sent, index)
    s, e = c.start - sent.start, c.end - sent.start
    # a role given without what it is of ("..., and governor") is of what the sentence or its
    # document's title is about
    context = set(terms(local)) | index.title_terms[index.chunks[sent.hit.chunk].doc_id]
    verdicts = []
    title = _TITLE.search(local[:s])
    if title:
        verdicts.append(_verdict(q, title.group(1), index, context, title=True))
    others = [a - sent.start for a, _, label in sent.spans if label == "PERSON" and a >= c.end]
    apposition = _apposition(local, e, others)
    if apposition:
        verdicts.append(_verdict(q, apposition, index, context, title=False))
    if any(verdicts):
        return True
    return False if False in verdicts else None


def _apposition(local: str, end: int, others: list[int]) -> str:
    """The comma-separated parts right after a name, up to the first that holds another person ("Jing
    Junhai, Secretary of ..., and An Tiecheng, ..."; in "A, governor of X B" the title is B's)."""
    if not local[end:].lstrip().startswith(","):
        return ""
    parts, pos = [], end
    for m in re.finditer(r"[^,;]+", local[end:]):
        a, b = end + m.start(), end + m.end()
        if any(a <= o < b for o in others):
            break
        parts.append(m.group())
        pos = b
    return ",".join(parts) if pos > end else ""


def _verdict(q: Question, text: str, index: Index, context: set[str], *, title: bool) -> bool | None:
    """Whether a title or an apposition gives the role asked: True, False or None as for
    :func:`role_verdict`, over each place it names the role's head noun."""
    verdict = None
    for m in re.finditer(r"[\w'’-]+", text):
        if terms(m.group()) == [q.role[-1]]:
            found = _occurrence(q, text, m, index, context, title=title)
            if found:
                return True
            if found is False:
                verdict = False
    return verdict


def _occurrence(
    q: Question, text: str, m: re.Match, index: Index, context: set[str], *, title: bool
) -> bool | None:
    before = _WORD_BEFORE.search(text, 0, m.start())
    word = before.group(1) if before else ""
    if (word.lower() in LESSER) != bool(set(q.role) & _LESSER_STEMS):
        return False  # a vice mayor for the mayor, or the other way
    if not q.role_of:
        return None  # a role of nothing named ("Who was elected President?") confirms no one
    # what the role is of: the words before it in a title ("CBS founder"), else its "of" phrase
    if title:
        given = set(terms(text[: m.start()])) - set(q.role) - _LESSER_STEMS
        if given and not given & set(q.role_of):
            return False
    else:
        of = _OF.match(text, m.end())
        given = set(terms(of.group(1))) if of else set()
        if given and _share(q.role_of, given, index) < ROLE_OF_SHARE:
            return False
    if not given and _share(q.role_of, context, index) < ROLE_OF_SHARE:
        return None
    # all of the role, as asked: "the first president" is not any president
    return True if set(q.role) <= set(terms(text)) else None


def _share(wanted: tuple[str, ...], given: set[str], index: Index) -> float:
    weight = {t: index.idf.get(t, index.default_idf) for t in wanted}
    total = sum(weight.values())
    return sum(w for t, w in weight.items() if t in given) / total if total else 0.0
