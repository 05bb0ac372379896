"""Stage 2: cut a document into overlapping, sentence-aligned passages within a token budget.

A chunk is a run of whole sentences whose text is exactly ``document.text[start:end]``; chunks never
cross page furniture (see :func:`rag.documents.content_runs`), so a passage never quotes it.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from .config import ChunkSettings
from .documents import content_runs
from .nlp import Sentence, count_tokens, encoding, split
from .types import Document


@dataclass(frozen=True)
class Passage:
    doc_id: str
    title: str
    date: str | None
    start: int
    end: int
    text: str
    sentences: tuple[Sentence, ...]

    @property
    def embedding_text(self) -> str:
        """What gets embedded and keyword-indexed: the passage under its document's title, because
        a passage deep in an article often names its subject only in the headline."""
        if self.text.startswith(self.title):
            return self.text
        return f"{self.title}\n{self.text}"

    @property
    def sentence_spans(self) -> list[tuple[int, int]]:
        """Each sentence's span in :attr:`embedding_text`."""
        shift = len(self.embedding_text) - len(self.text) - self.start
        return [(s.start + shift, s.end + shift) for s in self.sentences]


DEFAULT_SETTINGS = ChunkSettings()


def chunk_document(doc: Document, settings: ChunkSettings = DEFAULT_SETTINGS) -> list[Passage]:
    runs = content_runs(doc.text)
    sentences = split(doc.text, runs)
    chunks: list[Passage] = []
    for run_start, run_end in runs:
        if len(runs) > 1 and doc.text[run_start:run_end].strip() == doc.title:
            continue  # a title on its own: every other chunk carries it already (see embedding_text)
        in_run = [
            piece
            for s in sentences
            if run_start <= s.start and s.end <= run_end
            for piece in _fit(doc.text, s, settings.max_tokens)
        ]
        for group in _pack(doc.text, in_run, settings):
            start, end = group[0].start, group[-1].end
            chunks.append(Passage(doc.id, doc.title, doc.date, start, end, doc.text[start:end], tuple(group)))
    return chunks


def _fit(text: str, sent: Sentence, budget: int) -> list[Sentence]:
    """``sent``, or when it alone is over the token budget (a text with no sentence ends, a table, a
    blob), consecutive pieces of it within the budget, cut at a space where there is one."""
    body = text[sent.start : sent.end]
    if len(body) <= budget or count_tokens(body) <= budget:
        return [sent]  # a token is at least one character: a sentence this short always fits
    enc = encoding()
    _, starts = enc.decode_with_offsets(enc.encode(body, disallowed_special=()))
    starts.append(len(body))
    pieces: list[Sentence] = []
    a = 0
    while a < len(body):
        first = bisect_left(starts, a)
        b = starts[min(first + budget, len(starts) - 1)]
        if b < len(body):  # not the end: cut at the last space of the piece's second half, if any
            space = body.rfind(" ", a + (b - a) // 2, b)
            b = space if space > a else b
        # re-tokenised without its leading space, or cut at new edges, a piece can grow a token or two
        while count_tokens(body[a:b].strip()) > budget:
            b = a + (b - a) * 9 // 10
        b = max(b, a + 1)
        lo, hi = len(body[a:b]) - len(body[a:b].lstrip()), len(body[a:b].rstrip())
        if hi > lo:
            pieces.append(Sentence(sent.start + a + lo, sent.start + a + hi))
        a = b
    return pieces


def _pack(text: str, sentences: list[Sentence], settings: ChunkSettings) -> list[list[Sentence]]:
    """Greedy packing: add sentences while the span fits the budget; start the next chunk with the
    previous chunk's last sentences, up to ``overlap_tokens``, so a fact cut at a boundary is whole in one.
    """
    groups: list[list[Sentence]] = []
    current: list[Sentence] = []
    carried = 0  # how many sentences at the head of ``current`` came from the previous chunk
    for sent in sentences:
        if current and count_tokens(text[current[0].start : sent.end]) > settings.max_tokens:
            if len(current) > carried:
                groups.append(current)
            current = _overlap(text, current, settings.overlap_tokens)
            # the carried sentences plus this one may not fit: drop carry-over rather than the budget
            while current and count_tokens(text[current[0].start : sent.end]) > settings.max_tokens:
                current = current[1:]
            carried = len(current)
        current.append(sent)
    if len(current) > carried:
        groups.append(current)
    return groups


def _overlap(text: str, group: list[Sentence], budget: int) -> list[Sentence]:
    tail: list[Sentence] = []
    for sent in reversed(group[1:]):  # never carry the whole chunk over
        if count_tokens(text[sent.start : (tail[0] if tail else sent).end]) > budget:
            break
        tail.append(sent)
    return tail[::-1]
