"""Stage 8: the reply - retrieve, read, and answer with a short span and the sentence it stands in.

1. Read the question (:mod:`rag.question`): a follow-up is retrieved with the question before it.
2. Retrieve ``k`` passages (:mod:`rag.retrieval`); the reader (:mod:`rag.reader`) reads the best READ of
   them and scores its spans on one scale.
3. Decline when the question names something (a capitalised word, a number) that no document contains -
   the reply says which - or when the best span's certainty is under its calibrated threshold; the
   passages are listed as related reading. Otherwise reply with the span, then the sentence it came
   from (cut to about MAX_SUPPORT_WORDS words around it) and a ``[1]`` mark pointing at its passage.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from dataclasses import replace

from . import multilingual
from .messages import message
from .nlp import terms
from .question import read_question
from .reader import Reader, Span
from .retrieval import Hit, Index
from .types import Answer

READ = 3  # passages the reader reads, of the k retrieved
MAX_SUPPORT_WORDS = 40  # a longer supporting sentence is cut to this many words around the answer
RELATED = message("en", "related")
MAX_LISTED = 5  # names a decline lists before saying how many more it never found
MAX_NAME_CHARS = 60  # a longer name is cut in the reply
_QUOTES = "\"'“”‘’«» "
_NAME = re.compile(r"(?<![\w'’])([A-Z][\w'’-]*|\d[\w,.]*\w|\d)")
_ACRONYM = re.compile(r"^[A-Z0-9&]{2,6}s?$")
_ENDS = re.compile(r"[.!?。！？…][\"'”’)\]]*$")  # a sentence's end

_reader: Reader | None = None
_reader_lock = threading.Lock()


def default_reader() -> Reader:
    """The shipped reader, created once per process (it loads its model on first use)."""
    global _reader
    with _reader_lock:
        if _reader is None:
            _reader = Reader()
        return _reader


def answer(
    question: str, *, history: list[dict] | None, k: int, index: Index, reader: Reader | None = None
) -> Answer:
    language = multilingual.language(question) if index.multilingual else "en"
    reader = reader or default_reader()
    if language != "en":
        from .crosslingual import answer_other

        return answer_other(question, language, history=history, k=k, index=index, reader=reader)
    q, hits, unknown, spans = evidence(question, history=history, k=k, index=index, reader=reader)
    if not hits:
        return Answer(True, question_type=q.kind)
    related = [index.citation(h) for h in hits]
    if unknown:
        reason = message("en", "never", names=name_listing(unknown))
        return Answer(True, related, reason=reason, question_type=q.kind)
    best = choose(spans, hits, reader.retrieval_weight)
    if best is None or certainty(best, hits[best.passage], reader.calibration) < reader.threshold:
        return Answer(True, related, reason=RELATED, question_type=q.kind, confidence=_score(best))
    return _reply(best, hits, index, q.kind)


def evidence(
    question: str, *, history: list[dict] | None, k: int, index: Index, reader: Reader, every: bool = False
):
    """The question read, the passages retrieved, the names it gives that no document holds, and the
    reader's spans (best of each window; none read when a name is unknown). Passages whose spans could not
    be chosen are left unread, unless ``every`` passage is to be read (to weigh them another way)."""
    q = read_question(question, history)
    hits = index.search(q.query, k=k)
    unknown = [word for word in names(q.text) if not index.knows(word)]
    if not hits or unknown:
        return q, hits, unknown, []
    return q, hits, unknown, _read(reader, q.text, hits[:READ], index, every=every)


def _read(reader: Reader, question: str, hits: list[Hit], index: Index, *, every: bool) -> list[Span]:
    """The reader's spans of the passages of ``hits``, read one passage at a time, best hit first. A span's
    log-probability is at most 0, so once the best choice so far beats ``retrieval_weight`` times every
    unread passage's score, no span of theirs could be chosen: they are left unread, and ``choose`` picks
    the same span as if every passage had been read."""
    w = reader.retrieval_weight
    spans: list[Span] = []
    for i, hit in enumerate(hits):
        best = choose(spans, hits, w)
        if not every and best is not None and _merit(best, hits, w) >= w * max(h.score for h in hits[i:]):
            break
        read = reader.read(question, [index.passages[hit.row].text], top=None)
        spans.extend(replace(s, passage=i) for s in read)
    return spans


def choose(spans: list[Span], hits: list[Hit], retrieval_weight: float) -> Span | None:
    """The span with the best log-probability plus ``retrieval_weight`` times its passage's retrieval
    score: a confident span in a passage that matches the question well beats one in a passage that
    barely does."""
    return max(spans, key=lambda s: _merit(s, hits, retrieval_weight), default=None)


def _merit(span: Span, hits: list[Hit], retrieval_weight: float) -> float:
    return _log(span.score) + retrieval_weight * hits[span.passage].score


def _log(p: float) -> float:
    return math.log(max(p, 1e-12))


def certainty(span: Span, hit: Hit, calibration: Mapping[str, float]) -> float:
    """How sure a reply may be of ``span``; under the reader's threshold it declines. The span's
    log-probability, plus the calibrated weights (``calibration``, as in ``Reader.calibration``) of its
    passage's similarity to the question (low when no passage is about the question) and of the
    log-probability its window gives to "no answer"."""
    return (
        _log(span.score)
        + float(calibration.get("similarity_weight", 0.0)) * hit.dense
        - float(calibration.get("no_answer_weight", 0.0)) * _log(span.no_answer)
    )


def names(question: str) -> list[str]:
    """The question's names (capitalised words but the first) and numbers; acronyms are left out, since
    the documents may spell them out."""
    text = question.lstrip()
    return [
        m.group()
        for i, m in enumerate(_NAME.finditer(text))
        if not (i == 0 and m.start() == 0)
        and not (_ACRONYM.match(m.group()) and not m.group()[0].isdigit())
        and terms(m.group())
    ]


def name_listing(names: list[str]) -> str:
    """Names for a reply: each once (whatever its case), the first few in full, then how many more."""
    seen: dict[str, str] = {}
    for name in names:
        name = " ".join(name.split())
        short = name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1].rstrip() + "…"
        seen.setdefault(name.casefold(), short)
    distinct = list(seen.values())
    if len(distinct) > MAX_LISTED:
        more = len(distinct) - MAX_LISTED
        return f"{', '.join(distinct[:MAX_LISTED])} and {more} other name{'s' * (more != 1)}"
    return ", ".join(distinct)


def _score(span: Span | None) -> float | None:
    return round(span.score, 4) if span else None


def _reply(span: Span, hits: list[Hit], index: Index, kind: str) -> Answer:
    hit = hits[span.passage]
    chunk = index.passages[hit.row]
    start, end = trimmed(chunk.text, span.start, span.end)
    short = chunk.text[start:end]
    support = supporting_sentence(index, hit.row, start, end)
    first = index.citation(hit, answer=(start, end))
    rest = [index.citation(h) for h in hits if h.row != hit.row]
    return Answer(False, [first, *rest], short, support, question_type=kind, confidence=_score(span))


def trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without the quotes, spaces and trailing punctuation around it, nor a trailing 's."""
    while start < end and text[start] in _QUOTES:
        start += 1
    while end > start and (text[end - 1] in _QUOTES or text[end - 1] in ",;:"):
        end -= 1
    m = re.search(r"['’]s$", text[start:end])
    if m and end - start > 2:
        end -= 2
    return start, end


def supporting_sentence(index: Index, row: int, start: int, end: int) -> str:
    """The sentence of passage ``row`` that holds the answer ``[start, end)`` (offsets in the passage), cut
    to about MAX_SUPPORT_WORDS words around it. A sentence too long for one passage was cut by the chunker
    into pieces, which may begin or end the passage: where the sentence reaches the passage's edge, the
    neighbouring passage of the document is read too, to make it whole again."""
    passage = index.passages[row]
    a, b = passage.start + start, passage.start + end
    rows = [row]
    while True:
        found = _whole_sentence([index.passages[r] for r in rows], a, b)
        if found is None:  # sentences unknown
            s_start, s_end = _sentence(passage, start, end)
            return _cut(passage.text, s_start, s_end, start, end)
        text, first, to_start, to_end = found
        edges = ((row - 1, to_start), (row + 1, to_end))
        more = [r for r, reached in edges if reached and r not in rows and 0 <= r < len(index.passages)]
        more = [r for r in more if index.passages[r].doc_id == passage.doc_id]
        if not more:
            return _cut(text, 0, len(text), a - first, b - first)
        rows = sorted(rows + more)


def _whole_sentence(passages: list, a: int, b: int) -> tuple[str, int, bool, bool] | None:
    """The sentence holding document offsets ``[a, b)`` in ``passages`` (consecutive ones of a document):
    the chunker's pieces around it joined where one runs on into the next (no closing punctuation, and
    they meet at a space). Returns its text, its offset, and whether it reaches the first of these
    pieces, or the last one still open; None when no piece holds the answer."""
    base = passages[0].start
    text = ""  # the document from base, NUL where none of these passages holds it
    for p in passages:
        text = text[: p.start - base].ljust(p.start - base, "\0") + p.text
    order = sorted({(x.start, x.end) for p in passages for x in p.sentences})
    held = [i for i, (x, y) in enumerate(order) if x < b and y > a]
    if not held:
        return None

    def piece(i: int) -> str:
        return text[order[i][0] - base : order[i][1] - base]

    def closed(i: int) -> bool:
        return bool(_ENDS.search(piece(i).rstrip()))

    def joined(i: int) -> bool:  # piece i runs on into piece i + 1
        if order[i][1] > order[i + 1][0] or closed(i):
            return False
        # the space where the chunker cut may lie between two passages, in neither: then the piece after
        # must go on in lower case
        gap = text[order[i][1] - base : order[i + 1][0] - base]
        return gap in ("", " ") or (gap == "\0" and piece(i + 1)[:1].islower())

    lo, hi = held[0], held[-1]
    while lo > 0 and joined(lo - 1):
        lo -= 1
    while hi + 1 < len(order) and joined(hi):
        hi += 1
    first, last = order[lo][0], order[hi][1]
    whole = text[first - base : last - base].replace("\0", " ")
    return whole, first, lo == 0, hi == len(order) - 1 and not closed(hi)


def _sentence(chunk, start: int, end: int) -> tuple[int, int]:
    """The passage-relative span of the sentences holding ``text[start:end]`` (the whole passage when its
    sentences are unknown)."""
    lo, hi = None, None
    for s in chunk.sentences:
        a, b = s.start - chunk.start, s.end - chunk.start
        if a <= start < b or (lo is None and start < a):
            lo = a if lo is None else lo
        if lo is not None and a < end:
            hi = b
    if lo is None or hi is None:
        return 0, len(chunk.text)
    return max(0, lo), min(len(chunk.text), max(hi, end))


def _cut(text: str, s_start: int, s_end: int, a_start: int, a_end: int) -> str:
    """``text[s_start:s_end]``, cut at word boundaries to about MAX_SUPPORT_WORDS words around the answer
    ``text[a_start:a_end]``, with an ellipsis where it was cut."""
    words = [(m.start() + s_start, m.end() + s_start) for m in re.finditer(r"\S+", text[s_start:s_end])]
    if len(words) <= MAX_SUPPORT_WORDS:
        return text[s_start:s_end].strip()
    first = next(i for i, (a, b) in enumerate(words) if b > a_start)
    last = max(i for i, (a, b) in enumerate(words) if a < a_end)
    spare = max(0, MAX_SUPPORT_WORDS - (last - first + 1))
    lo = max(0, first - spare // 2)
    hi = min(len(words) - 1, lo + max(MAX_SUPPORT_WORDS, last - first + 1) - 1)
    lo = max(0, min(lo, hi - MAX_SUPPORT_WORDS + 1))
    out = text[words[lo][0] : words[hi][1]]
    return ("…" if lo > 0 else "") + out.rstrip(",;:") + ("…" if hi < len(words) - 1 else "")
