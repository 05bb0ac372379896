"""Stage 6: extract a short, cited answer from retrieved passages - no language model.

1. Read the question: what kind of answer it wants (a date for "when", a person for "who", ...) and its
   content words, weighted by rarity (BM25's idf).
2. Score every sentence of the retrieved passages: semantic similarity to the question (sentence
   vectors built at index time), the share of the question's weighted words it contains, and how well
   its passage was retrieved.
3. For typed questions, pick the entity of the wanted kind (spaCy NER, plus patterns for amounts and
   dates) near the question's words in a high-scoring sentence, never one the question itself names.
   Otherwise the answer is the best sentence, trimmed to the clauses that answer.
4. Abstain when the best evidence is weak or the question names something the documents never mention.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .embedding import embed
from .nlp import term_spans, terms
from .retrieval import Hit, Index
from .types import Answer

# --- what kind of answer a question wants -------------------------------------------------------
# (pattern, kind); the earliest match in the question wins, so "In which city ... when" is a place.
_KINDS: list[tuple[re.Pattern, str]] = [
    (
        re.compile(
            r"\bhow\s+(?:many|much)\b|\bhow\s+large\b|\b(?:what|which)\s+(?:is\s+the\s+|was\s+the\s+)?"
            r"(?:number|amount|total|sum|value|percentage|share|proportion|figure|size|count)\b"
        ),
        "number",
    ),
    (re.compile(r"\b(?:what|which)\s+(?:\w+\s+)?(?:anniversary|rank|edition|session)\b"), "ordinal"),
    (
        re.compile(
            r"\bwhen\b|\b(?:what|which)\s+(?:year|date|day|month|time|decade|century|period)\b"
            r"|\bhow\s+long\b|\bhow\s+old\b"
        ),
        "date",
    ),
    (
        re.compile(
            r"\bwho(?:m|se)?\b|\b(?:what|which)\s+(?:\w+\s+)?(?:person|official|leader|man|woman|people|"
            r"secretary|governor|mayor|director|chairman|chairwoman|president|manager|minister|deputy|"
            r"head|chief|member|representative|executive|founder|editor|author|scientist|player|coach)\b"
        ),
        "person",
    ),
    (
        re.compile(
            r"\bwhere\b|\b(?:what|which)\s+(?:\w+\s+)?(?:city|cities|province|country|countries|place|"
            r"region|town|district|location|county|prefecture|state|continent|area|village|capital)\b"
        ),
        "place",
    ),
    (
        re.compile(
            r"\b(?:what|which)\s+(?:\w+\s+)?(?:company|companies|organi[sz]ations?|institutes?|"
            r"institutions?|group|firm|agency|body|university|enterprise|brand|department|ministry|"
            r"cent(?:er|re)|committee|automaker|manufacturer|carmaker|team|party|government|bank|school|"
            r"association|council|club|newspaper|network)\b"
        ),
        "organisation",
    ),
]

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
}

# Patterns for answers NER misses or splits ("RMB21 billion", "2021-04-06", "30%").
_PATTERNS: list[tuple[re.Pattern, str]] = [
    (
        re.compile(
            r"(?:RMB|USD|US\$|HK\$|\$|€|£|¥|yuan\s)\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:billion|million|thousand|"
            r"trillion|bn|m))?(?:\s(?:yuan|dollars|euros))?",
            re.I,
        ),
        "MONEY",
    ),
    (re.compile(r"\d[\d,]*(?:\.\d+)?\s?(?:%|per\s?cent)", re.I), "PERCENT"),
    (re.compile(r"(?<![\w-])(?:19|20)\d{2}-\d{1,2}-\d{1,2}(?![\w-])"), "DATE"),
    # a name in quotes ("the “Bestune” brand") is often one NER does not know
    (re.compile(r"(?<=[“\"])[^”\"\n]{2,40}(?=[”\"])"), "QUOTED"),
    (
        re.compile(
            r"(?<![\w.,])\d[\d,]*(?:\.\d+)?(?:\s(?:billion|million|thousand|hundred|trillion))?(?![\w%])"
        ),
        "CARDINAL",
    ),
]

# Follow-ups lean on the previous question: pronouns, "and ...?", "what about ...?"
_FOLLOW_UP = re.compile(
    r"\b(?:it|its|they|them|their|theirs|he|him|his|she|her|hers|this|that|these|those|"
    r"there|the\s+same)\b|^\s*(?:and|also|what\s+about|how\s+about)\b",
    re.I,
)

# A date with a number or a month name ("March 31, 2021") answers "when" better than "this year".
_CONCRETE_DATE = re.compile(
    r"\b(?:1[5-9]|20)\d{2}s?\b|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\b", re.I
)
_ACRONYM = re.compile(r"^[A-Z0-9&]{2,6}s?$")

# Scoring weights, set on a SQuAD dev sample (see README, "How it works").
W_SENT_DENSE, W_SENT_LEX, W_CHUNK = 1.0, 0.6, 0.3
W_LABEL, W_NEAR = 0.5, 0.6
NEAR_WORDS = 8.0  # distance, in words, at which a question word near a candidate counts half
BEFORE = 0.6  # question words before a candidate count less than after ("Name, title of body, ...")
CONTEXT_CREDIT = 0.3  # share of a question word's weight earned when only the sentence's passage has it
HISTORY_WEIGHT = 0.3  # words of the previous question, for follow-ups
MAX_SUPPORT_WORDS = 36  # a supporting quote longer than this is trimmed to its best clauses
ABSTAIN_BELOW = 0.55
# share (by idf) of the question's names a document may lack and still answer: questions name things more
# fully than texts do ("the Denver Broncos" / "the Broncos"), but not one of them at all is too little
MAX_MISSING_NAMES = 0.5  # best sentence score under which the evidence is too weak to answer

ABSTAIN_TEXT = "The documents don't say."
_QUOTES = "\"'“”‘’«» "


@dataclass(frozen=True)
class Question:
    text: str
    kind: str
    weights: dict[str, float]  # stemmed content word -> weight (idf; halved for words from history)
    named: frozenset[str]  # words the question itself (or its context) names: never the answer
    query: str  # what is sent to retrieval


@dataclass
class _Scored:
    hit: Hit
    start: int  # absolute offsets of the sentence in its document
    end: int
    score: float
    entities: tuple[tuple[int, int, str], ...]
    term_positions: list[tuple[int, int, str]]  # absolute spans of the sentence's content words


def question_kind(question: str) -> str:
    q = question.lower()
    best: tuple[int, str] | None = None
    for pattern, kind in _KINDS:
        m = pattern.search(q)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), kind)
    return best[1] if best else "phrase"


def last_user_turn(history: list[dict] | None) -> str | None:
    return last_turn(history, "user")


def last_turn(history: list[dict] | None, role: str) -> str | None:
    for turn in reversed(history or []):
        if isinstance(turn, dict) and turn.get("role") == role:
            text = message_text(turn.get("content"))
            if text.strip():
                return text
    return None


def message_text(content) -> str:
    """A chat message's text, whether a string or a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    if isinstance(content, list):
        return " ".join(message_text(part) for part in content)
    return ""


def read_question(question: str, history: list[dict] | None, index: Index) -> Question:
    weights = {t: index.idf.get(t, index.default_idf) for t in terms(question)}
    named = set(weights)
    query = question
    previous = last_user_turn(history)
    if previous and (_FOLLOW_UP.search(question) or len(weights) < 2):
        for t in terms(previous):
            weights.setdefault(t, HISTORY_WEIGHT * index.idf.get(t, index.default_idf))
            named.add(t)
        # a follow-up asks for something new: what was just answered is not the answer again
        named.update(terms(last_turn(history, "assistant") or ""))
        query = f"{previous} {question}"
    return Question(question, question_kind(question), weights, frozenset(named), query)


def answer(question: str, *, history: list[dict] | None, k: int, index: Index) -> Answer:
    q = read_question(question, history, index)
    qvec = embed([q.query])[0]
    hits = index.search(q.query, k=k, query_vector=qvec)
    if not hits:
        return Answer(ABSTAIN_TEXT, True, [], None, q.kind)
    names = _names(question)
    unknown = [word for word, stems in names if not all(t in index.idf for t in stems)]
    if unknown:
        return _abstain(q, hits, index, unknown)
    # an answer must come from a document that mentions (most of) the names and numbers the question gives
    name_weights = {t: index.idf[t] for _, stems in names for t in stems}
    sentences = [
        s
        for s in _score_sentences(q, qvec, hits, index)
        if _missing_share(name_weights, index.doc_terms[index.chunks[s.hit.chunk].doc_id])
        <= MAX_MISSING_NAMES
    ]
    best = max(sentences, key=lambda s: s.score) if sentences else None
    if best is None or best.score < ABSTAIN_BELOW:
        return _abstain(q, hits, index, [])

    span: tuple[int, int] | None = None
    chosen = best
    if LABELS[q.kind]:
        pick = _pick_entity(q, sentences, index)
        if pick is None:
            # a "when" with no date, a "who" with no name in any good passage: the answer is not there
            return _abstain(q, hits, index, [])
        chosen, span = pick
    support_start, support_end = _trim(chosen, q, span, index)
    chunk = index.chunks[chosen.hit.chunk]
    doc_text_support = chunk.text[support_start - chunk.start : support_end - chunk.start]
    if support_start > chosen.start:
        doc_text_support = "…" + doc_text_support
    if support_end < chosen.end:
        doc_text_support = doc_text_support.rstrip(",;: ") + "…"
    if span:
        short = re.sub(
            r"['’]s$", "", chunk.text[span[0] - chunk.start : span[1] - chunk.start].strip(_QUOTES)
        )
        text = (
            f"{short}.\n\n{doc_text_support} [1]"
            if not short.endswith(".")
            else f"{short}\n\n{doc_text_support} [1]"
        )
        rel = (span[0] - chunk.start, span[1] - chunk.start)
    else:
        short = doc_text_support.strip("…").strip()
        text = f"{doc_text_support} [1]"
        rel = (support_start - chunk.start, support_end - chunk.start)
    first = index.citation(chosen.hit, answer=rel)
    rest = [index.citation(h) for h in hits if h.chunk != chosen.hit.chunk]
    return Answer(text, False, [first, *rest], short, q.kind)


def _abstain(q: Question, hits: list[Hit], index: Index, unknown: list[str]) -> Answer:
    if unknown:
        text = f"{ABSTAIN_TEXT} They never mention {', '.join(unknown)}."
    else:
        text = f"{ABSTAIN_TEXT} The closest passages are listed below as related reading, not as an answer."
    return Answer(text, True, [index.citation(h) for h in hits], None, q.kind)


def _missing_share(weights: dict[str, float], present: set[str]) -> float:
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t not in present) / total if total else 0.0


def _names(question: str) -> list[tuple[str, list[str]]]:
    """The question's names (capitalised words) and numbers, each with its stemmed terms."""
    found = []
    text = question.lstrip()
    for i, m in enumerate(re.finditer(r"(?<![\w'’])([A-Z][\w'’-]*|\d[\w,.]*\w|\d)", text)):
        word = m.group()
        if i == 0 and m.start() == 0:
            continue  # the first word of a question is capitalised anyway
        if _ACRONYM.match(word) and not word[0].isdigit():
            continue  # an acronym may stand for words the documents spell out ("CAS")
        stems = terms(word)
        if stems:
            found.append((word, stems))
    return found


def _score_sentences(q: Question, qvec: np.ndarray, hits: list[Hit], index: Index) -> list[_Scored]:
    rows, owners = [], []
    for hit in hits:
        chunk = index.chunks[hit.chunk]
        for sent, row in zip(chunk.sentences, index.stored.sentence_rows[hit.chunk], strict=True):
            rows.append(row)
            owners.append((hit, chunk, sent))
    if not rows:
        return []
    dense = np.asarray(index.stored.sentence_vectors[rows]) @ qvec
    total = sum(q.weights.values()) or 1.0
    titles = {hit.chunk: set(terms(index.chunks[hit.chunk].title)) for hit in hits}
    context = {hit.chunk: set(terms(index.chunks[hit.chunk].text)) for hit in hits}
    out = []
    for (hit, chunk, sent), d in zip(owners, dense.tolist(), strict=True):
        local = chunk.text[sent.start - chunk.start : sent.end - chunk.start]
        positions = [(sent.start + s, sent.start + e, t) for s, e, t in term_spans(local)]
        present = {t for _, _, t in positions}
        # a sentence need not repeat its topic: words of the document's title count in full for each
        # of its sentences, words found elsewhere in the passage count in part
        lex = (
            sum(
                w
                if t in present or t in titles[hit.chunk]
                else CONTEXT_CREDIT * w
                if t in context[hit.chunk]
                else 0.0
                for t, w in q.weights.items()
            )
            / total
        )
        score = W_SENT_DENSE * d + W_SENT_LEX * lex + W_CHUNK * hit.dense
        out.append(_Scored(hit, sent.start, sent.end, score, _candidates(sent, local), positions))
    return out


def _candidates(sent, local: str) -> tuple[tuple[int, int, str], ...]:
    """The sentence's entities, plus pattern matches that no entity already covers."""
    found = list(sent.entities)
    for pattern, label in _PATTERNS:
        for m in pattern.finditer(local):
            s, e = sent.start + m.start(), sent.start + m.end()
            if not any(a < e and s < b for a, b, _ in found):
                found.append((s, e, label))
    return tuple(found)


def _pick_entity(q: Question, sentences: list[_Scored], index: Index):
    labels = LABELS[q.kind]
    best, best_score = None, -math.inf
    for sent in sentences:
        chunk = index.chunks[sent.hit.chunk]
        # the question's words beyond its document's title say what is asked about the topic
        title = set(terms(chunk.title))
        focus = sum(w for t, w in q.weights.items() if t not in title) or 1.0
        typed = sorted((s, e, label) for s, e, label in sent.entities if labels.get(label))
        for n, (s, e, label) in enumerate(typed):
            words = terms(chunk.text[s - chunk.start : e - chunk.start])
            if not words or all(w in q.named for w in words):
                continue  # the question already names it: it is the topic, not the answer
            weight = labels[label]
            if label == "DATE" and not _CONCRETE_DATE.search(chunk.text[s - chunk.start : e - chunk.start]):
                weight *= 0.5
            # question words between this candidate and its neighbours of the same kind say what it is
            lo = typed[n - 1][1] if n > 0 else sent.start
            hi = typed[n + 1][0] if n + 1 < len(typed) else sent.end
            near = 0.0
            for a, b, t in sent.term_positions:
                w = q.weights.get(t)
                if not w or (s <= a and b <= e):
                    continue
                if e <= a < hi:
                    # up to the next candidate, words describe this one ("Name, title of body, Name2")
                    near += w / (1.0 + _gap(s, e, a, b, chunk.text, chunk.start) / NEAR_WORDS)
                elif lo <= a and b <= s:
                    near += BEFORE * w / (1.0 + _gap(s, e, a, b, chunk.text, chunk.start) / NEAR_WORDS)
            score = sent.score + W_LABEL * weight + W_NEAR * min(near / focus, 1.0)
            if score > best_score:
                best, best_score = (sent, (s, e)), score
    if best is None or best[0].score < ABSTAIN_BELOW:
        return None
    return best


def _gap(s: int, e: int, a: int, b: int, text: str, offset: int) -> float:
    """Words between two spans of the same sentence."""
    lo, hi = (e, a) if e <= a else (b, s)
    if hi <= lo:
        return 0.0
    return float(len(text[lo - offset : hi - offset].split()))


_CLAUSE = re.compile(r"[,;:–—]\s+|\s+(?=(?:and|but|while|which|who|with)\s)")


def _trim(sent: _Scored, q: Question, span: tuple[int, int] | None, index: Index) -> tuple[int, int]:
    """The clauses of a long sentence that carry the answer and the question's words."""
    chunk = index.chunks[sent.hit.chunk]
    text = chunk.text[sent.start - chunk.start : sent.end - chunk.start]
    if len(text.split()) <= MAX_SUPPORT_WORDS:
        return sent.start, sent.end
    pieces, pos = [], 0
    for m in _CLAUSE.finditer(text):
        pieces.append((pos, m.end()))
        pos = m.end()
    pieces.append((pos, len(text)))
    pieces = [(sent.start + a, sent.start + b) for a, b in pieces if b > a]

    def value(piece: tuple[int, int]) -> float:
        a, b = piece
        v = sum(q.weights.get(t, 0.0) for s, e, t in sent.term_positions if a <= s and e <= b)
        if span and a <= span[0] < b:
            v += 1000.0  # the clause holding the answer is always kept
        return v

    def words(a: int, b: int) -> int:
        return len(chunk.text[a - chunk.start : b - chunk.start].split())

    i = max(range(len(pieces)), key=lambda j: value(pieces[j]))
    lo = hi = i
    while True:
        options = []
        if lo > 0 and words(pieces[lo - 1][0], pieces[hi][1]) <= MAX_SUPPORT_WORDS:
            options.append((value(pieces[lo - 1]), 0, lo - 1, hi))
        if hi < len(pieces) - 1 and words(pieces[lo][0], pieces[hi + 1][1]) <= MAX_SUPPORT_WORDS:
            options.append((value(pieces[hi + 1]), 1, lo, hi + 1))
        if not options:
            break
        _, _, lo, hi = max(options)
    start, end = pieces[lo][0], pieces[hi][1]
    if span:  # never cut into the answer, even in a clause longer than the limit
        start, end = min(start, span[0]), max(end, span[1])
    local = chunk.text[start - chunk.start : end - chunk.start]
    return start, start + len(local.rstrip())
