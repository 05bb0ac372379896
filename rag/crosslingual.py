"""Stage 8b: the reply to a question in another language than English.

The reader reads English only, so such a question is answered by the English sentences that answer it,
quoted with their ``[1]`` mark under a line, in the question's language, that says the source is in
English; and by a short answer first when the reader is sure of one.

1. Retrieve through the multilingual vectors and BM25 over the question's words rendered in the documents'
   English (:meth:`rag.Index.search_multilingual`); a follow-up is also retrieved with the user's
   previous question in front of it, and each passage keeps its better match.
2. Decline, in the question's language, when the question names in Latin letters something that no
   document holds, or when no passage comes near it (:data:`MIN_SIMILARITY`) and it names nothing that
   the documents hold.
3. Otherwise the reader reads the question glossed word by word in the documents' English
   (:meth:`rag.Index.gloss`: "火山里在监测什么气体？" -> "what volcano monitor gas?") in the best
   passage, and, when it is unsure of its span there (certainty under UNSURE), in the other passages of
   its document among the hits: the passage that answers is often another of the same article. It
   declines when no span reaches DECLINE. The sentence holding the surest span is quoted, with the next
   best sentences of its passage (by their multilingual vectors' nearness to the question) while the
   quote stays short. The span is the short answer when the reader's certainty reaches the threshold
   an English answer must reach; the gloss is no English question, so it seldom does. Where the reader
   finds nothing, the sentences of the best READ passages are ranked by nearness to the question alone.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from . import multilingual
from .answering import READ, certainty, name_listing, supporting_sentence, trimmed
from .messages import message
from .question import last_turn
from .reader import Reader, Span
from .retrieval import Index
from .types import Answer

# When no passage reaches this cosine with the question, nothing is near enough to answer from, unless
# the question names something the documents hold.
# Set between questions of our own asked of the seeds (none from eval/qa-zh.jsonl): 12 about unrelated
# subjects (cooking, football, weather; Chinese, Japanese, German) whose best passages scored 0.08-0.15,
# and 6 about the articles' subjects, 0.17-0.41. Questions on the articles' own subjects that the
# articles do not answer stay above it: what declines them is a name no document holds.
MIN_SIMILARITY = 0.16
# The reader's certainty (answering.certainty) of its span for a question's gloss: under UNSURE in the
# best passage, the next passages of its document are read too, of the next two, then of the rest (the
# gold passage is often another of the same article); under DECLINE in all of them, it declines. Both
# were chosen on eval/qa-zh.jsonl and checked on eval/qa-zh-heldout.jsonl (README, "Questions in other
# languages"); a gloss is no English question, so the English threshold (Reader.threshold) would
# decline nearly every answerable one.
UNSURE = 0.0
DECLINE = -2.0
MAX_WORDS = 50  # the quote's length, in words, at most
REPLY_WORDS = 60  # the reply's: its first line (the short answer, the note), the quote and its mark


def answer_other(
    question: str, language: str, *, history: list[dict] | None, k: int, index: Index, reader: Reader
) -> Answer:
    previous = last_turn(history, "user")
    queries = [question] + ([f"{previous} {question}"] if previous else [])
    query_vectors = multilingual.encode(queries)
    # the question rendered word by word in the documents' English ("火山里在监测什么气体？" -> "what volcano
    # monitor gas?"): searched for, and read by the English reader
    english = index.gloss(question)
    hits = index.search_multilingual(queries, k=k, query_vectors=query_vectors, gloss=english)
    if not hits:
        return Answer(True, language=language)
    related = [index.citation(h) for h in hits]
    latin = multilingual.latin_names(question)
    unknown = [name for name in latin if not index.knows(name)]
    if unknown:
        reason = message(language, "never", names=name_listing(unknown))
        return Answer(True, related, reason=reason, language=language)
    # a question naming what the documents hold is about them, however loosely it matches a passage (a
    # short one: "王子联是什么职务？" scores 0.12 with the passage that answers it)
    if max(h.dense for h in hits) < MIN_SIMILARITY and not (english.names or latin):
        return Answer(True, related, reason=message(language, "related"), language=language)
    # the English reader reads the gloss: the sentence holding its span is quoted first, and the span is
    # the short answer when the reader is as sure of it as it must be of an English question's
    span, sure = _surest(english.text, hits, index, reader)
    if span is not None and sure < DECLINE:
        return Answer(True, related, reason=message(language, "related"), language=language)
    if span is not None and span.passage:
        hits = [hits[span.passage]] + [h for i, h in enumerate(hits) if i != span.passage]
    candidates = []  # (hit, passage, sentence start, sentence end), offsets in the passage
    for hit in hits[: 1 if span else READ]:
        passage = index.passages[hit.row]
        for s in passage.sentences:
            start, end = max(0, s.start - passage.start), min(len(passage.text), s.end - passage.start)
            if passage.text[start:end].strip():
                candidates.append((hit, passage, start, end))
    if not candidates:
        return Answer(True, related, reason=message(language, "related"), language=language)
    vectors = multilingual.encode([p.text[a:b] for _, p, a, b in candidates])
    similarity = (vectors @ query_vectors.T).max(axis=1)
    ranked = np.argsort(-(similarity + np.array([h.score for h, *_ in candidates])), kind="stable")
    # a piece of a sentence too long for one passage ("industry of Jilin Province.") is quoted only when
    # nothing whole is there
    ranked = sorted(ranked, key=lambda i: not _whole(candidates[i]))
    holding = [i for i in ranked if span and _holds(candidates[i], hits[0], span.start)]
    if holding:
        ranked = [holding[0]] + [i for i in ranked if i != holding[0]]
    hit, passage, start, end = candidates[ranked[0]]
    short, sentence = None, None
    if holding:
        a, b = trimmed(passage.text, span.start, span.end)
        sentence = supporting_sentence(index, hit.row, a, b)
        if sure >= reader.threshold:
            start, end = a, b
            short = passage.text[a:b] or None
    first = index.citation(hit, answer=(start, end))
    rest = [index.citation(h) for h in hits if h.row != hit.row]
    # a long short answer, or a note of several words, leaves the quote fewer
    headline = len(message(language, "english").split()) + len((short or "").split())
    words = min(MAX_WORDS, REPLY_WORDS - headline - 1)
    quote = _quote(candidates, ranked, sentence, words)
    return Answer(False, [first, *rest], short, quote, language=language)


def _surest(gloss: str, hits: list, index: Index, reader: Reader) -> tuple[Span | None, float]:
    """The reader's best span for ``gloss`` in the best passage, and its certainty; where it is under
    UNSURE, the surest span of that and the other passages of its document among the best READ, and
    where it still is, among all of ``hits`` (``span.passage`` is its hit's rank). Only its document's:
    another article's passage, read from a gloss, could outbid it with a span of the wrong subject."""
    passages = [index.passages[h.row] for h in hits]  # each parsed once
    found = []  # (certainty, span)
    for first, last in ((0, 1), (1, READ), (READ, len(hits))):
        ranks = [r for r in range(first, min(last, len(hits))) if passages[r].doc_id == passages[0].doc_id]
        for s in reader.read(gloss, [passages[r].text for r in ranks], top=None):  # none for no gloss
            s = replace(s, passage=ranks[s.passage])
            found.append((certainty(s, hits[s.passage], reader.calibration), s))
        if found and max(c for c, _ in found) >= UNSURE:
            break
    sure, span = max(found, key=lambda f: f[0], default=(-math.inf, None))
    return span, sure


def _quote(candidates: list[tuple], ranked: list[int], first: str | None, most: int) -> str:
    """The best sentence (``first`` when given: the reader's, cut around its span), with the next best of
    the same passage while the quote stays within ``most`` words, in the passage's order (whole sentences
    only). One sentence often misses the answer that its neighbour holds (on eval/qa-zh.jsonl, before
    questions were also matched word by word, the reply held the gold 43% of the time with one sentence,
    52% with this)."""
    best = candidates[ranked[0]]
    texts = {ranked[0]: (first or _text(best)).strip()}
    words = len(texts[ranked[0]].split())
    for i in ranked[1:]:
        c = candidates[i]
        n = len(_text(c).split())
        text = _text(c).strip()
        if c[0] is best[0] and _whole(c) and words + n <= most and text not in texts.values():
            texts[i] = text
            words += n
    quote = " ".join(texts[i] for i in sorted(texts, key=lambda i: candidates[i][2]))
    cut = quote.split()
    return quote if len(cut) <= most else " ".join(cut[:most]) + "…"


def _holds(candidate: tuple, hit, offset: int) -> bool:
    """Whether ``candidate`` is the sentence of ``hit``'s passage at ``offset``."""
    found, _, start, end = candidate
    return found is hit and start <= offset < end


def _whole(candidate: tuple) -> bool:
    """Not the rest of a sentence cut where a passage begins: those start in lower case."""
    first = _text(candidate).strip()[:1]
    return not first.isalpha() or first.isupper()


def _text(candidate: tuple) -> str:
    _, passage, start, end = candidate
    return passage.text[start:end]
