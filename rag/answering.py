"""Stage 6: extract a short, cited answer from retrieved passages - no language model.

1. Read the question (:mod:`rag.question`): the kind of answer it wants (a date for "when", a person for
   "who", ...), its words weighted by rarity, the names it gives, and for a follow-up the turn before.
2. Score every sentence of the retrieved passages and every span in them that could answer
   (:mod:`rag.candidates`); a logistic-regression ranker fitted on SQuAD picks the span.
3. Reply with the span, then the sentence it came from (trimmed to the clauses that carry it) and a
   ``[1]`` mark pointing at its passage. "Why"/"how" questions get the best sentence.
4. Abstain when the question names something the documents never mention (a name, or the noun of
   "what was the <noun> of ...?"), or when the best candidate is unlikely to be right.
"""

from __future__ import annotations

import re

from .candidates import READ_TOP, Candidate, Sentence, candidates, rank, ranker_threshold, score_sentences
from .embedding import embed
from .nlp import terms
from .question import Question, read_question
from .retrieval import Hit, Index
from .roles import screen
from .types import Answer

MAX_SUPPORT_WORDS = 36  # a supporting quote longer than this is trimmed to its best clauses
EXPLAIN_BELOW = 0.9  # sentence score under which a "why"/"how" question is not answered
WIDER_READ = 2 * READ_TOP  # sentences read when none of the best READ_TOP holds a likely answer

ABSTAIN_TEXT = "The documents don't say."
MAX_LISTED = 5  # names a decline lists before saying how many more it never found
MAX_NAME_CHARS = 60  # a longer name is cut in the reply
_QUOTES = "\"'“”‘’«» "


def evidence(question: str, *, history: list[dict] | None, k: int, index: Index):
    """The question read, the passages retrieved, their sentences and the answer candidates (unranked)."""
    q = read_question(question, history, index)
    qvec = embed([q.query])[0]
    hits = index.search(q.query, k=k, query_vector=qvec)
    sentences = score_sentences(q, qvec, hits, index)
    spans = candidates(q, sentences, index) if q.kind != "explain" else []
    return q, hits, sentences, spans


def answer(question: str, *, history: list[dict] | None, k: int, index: Index) -> Answer:
    q, hits, sentences, spans = evidence(question, history=history, k=k, index=index)
    if not hits:
        return Answer(ABSTAIN_TEXT, True, [], None, q.kind)
    unknown = [word for word, stems in q.names if not all(t in index.idf for t in stems)]
    if q.asked and not all(t in index.idf for t in terms(q.asked)):
        unknown.append(q.asked)  # "the theme of ...": the documents never speak of a theme
    if unknown:
        return _abstain(q, hits, index, unknown)
    if q.kind == "explain":
        best = max(sentences, key=lambda s: s.score, default=None)
        if best is None or best.score < EXPLAIN_BELOW:
            return _abstain(q, hits, index, [])
        return _reply(q, best, None, hits, index)
    cut = ranker_threshold()
    best = choose(q, sentences, spans, index, cut)
    if best is None or not _likely(best, cut):
        return _abstain(q, hits, index, [])
    return _reply(q, best.sentence, best, hits, index)


def choose(
    q: Question, sentences: list[Sentence], spans: list[Candidate], index: Index, cut: float
) -> Candidate | None:
    """The best candidate. When it is below ``cut`` and there are sentences left, WIDER_READ sentences
    are read: an answer is sometimes in a sentence that shares few words with the question."""
    ranked = screen(q, rank(spans), index)
    if (not ranked or not _likely(ranked[0], cut)) and len(sentences) > READ_TOP:
        ranked = screen(q, rank(candidates(q, sentences, index, top=WIDER_READ)), index)
    return ranked[0] if ranked else None


def _likely(c: Candidate, cut: float) -> bool:
    # a person the text gives the very role asked about answers however loosely the sentence matches
    return c.verified or c.score >= cut


def _reply(q: Question, sent: Sentence, best: Candidate | None, hits: list[Hit], index: Index) -> Answer:
    chunk = index.chunks[sent.hit.chunk]
    span = (best.start, best.end) if best else None
    support_start, support_end = _trim(sent, q, span, index)
    support = chunk.text[support_start - chunk.start : support_end - chunk.start]
    if support_start > sent.start:
        support = "…" + support
    if support_end < sent.end:
        support = support.rstrip(",;: ") + "…"
    if best:
        short = re.sub(r"['’]s$", "", best.text.strip(_QUOTES))
        text = f"{short}{'' if short.endswith('.') else '.'}\n\n{support} [1]"
        rel = (best.start - chunk.start, best.end - chunk.start)
    else:
        short = support.strip("…").strip()
        text = f"{support} [1]"
        rel = (support_start - chunk.start, support_end - chunk.start)
    first = index.citation(sent.hit, answer=rel)
    rest = [index.citation(h) for h in hits if h.chunk != sent.hit.chunk]
    return Answer(text, False, [first, *rest], short, q.kind)


def _abstain(q: Question, hits: list[Hit], index: Index, unknown: list[str]) -> Answer:
    if unknown:
        text = f"{ABSTAIN_TEXT} They never mention {_listing(unknown)}."
    else:
        text = f"{ABSTAIN_TEXT} The closest passages are listed below as related reading, not as an answer."
    return Answer(text, True, [index.citation(h) for h in hits], None, q.kind)


def _listing(names: list[str]) -> str:
    """Names for a reply: each once (whatever its case), the first few in full, then how many more."""
    seen: dict[str, str] = {}
    for name in names:
        name = " ".join(name.split())
        seen.setdefault(name.casefold(), _shorten(name))
    distinct = list(seen.values())
    if len(distinct) > MAX_LISTED:
        more = len(distinct) - MAX_LISTED
        return f"{', '.join(distinct[:MAX_LISTED])} and {more} other name{'s' * (more != 1)}"
    return ", ".join(distinct)


def _shorten(name: str) -> str:
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1].rstrip() + "…"


_CLAUSE = re.compile(r"[,;:–—]\s+|\s+(?=(?:and|but|while|which|who|with)\s)")


def _trim(sent: Sentence, q: Question, span: tuple[int, int] | None, index: Index) -> tuple[int, int]:
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
