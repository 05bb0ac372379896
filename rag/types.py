"""Result types shared by every stage: what the library hands back to callers."""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import asdict, dataclass, field

from .messages import message


@dataclass(frozen=True)
class Document:
    """One source document and its text: a text file as read, or the text extracted from HTML or PDF.

    ``pages`` holds the offset in ``text`` where each page starts (page 1 at 0) for paged formats
    (PDF), and is empty for the rest.
    """

    id: str  # the file name (relative to the source folder)
    title: str
    date: str | None
    text: str
    pages: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        pages = self.pages
        if pages and (
            pages[0] != 0
            or pages[-1] > len(self.text)
            or any(a > b for a, b in zip(pages, pages[1:], strict=False))
        ):
            raise ValueError(f"{self.id}: page starts {pages[:5]}... must rise from 0 within the text")

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding ``offset`` of ``text`` (0 to ``len(text)``); None for an unpaged
        document. For a passage ``text[start:end]``, its last page is ``page_at(end - 1)``."""
        if not 0 <= offset <= len(self.text):
            raise ValueError(f"offset {offset} is outside {self.id} (0 to {len(self.text)})")
        if not self.pages:
            return None
        # the last page starting at or before the offset: the blank line between two pages counts
        # as the page before it
        return bisect_right(self.pages, offset)


@dataclass(frozen=True)
class Citation:
    """A passage that supports an answer (or a retrieval hit).

    ``start``/``end`` are character offsets of ``text`` in the source document's text, so
    ``source_text[start:end] == text``. ``answer_start``/``answer_end`` locate the
    answer span inside ``text`` when there is one. ``page`` is the page the passage starts on, for
    paged sources (PDF).
    """

    source: str
    title: str
    date: str | None
    text: str
    start: int
    end: int
    score: float
    answer_start: int | None = None
    answer_end: int | None = None
    page: int | None = None

    @property
    def answer(self) -> str | None:
        if self.answer_start is None or self.answer_end is None:
            return None
        return self.text[self.answer_start : self.answer_end]


DECLINE = message("en", "decline")  # how every declining reply to an English question begins
_MARK = re.compile(r"\[(\d+)\]")  # a citation mark: [n] refers to citations[n-1]


def marks_in(text: str) -> list[int]:
    """The numbers of the ``[n]`` marks written in ``text``, in order (repeats included)."""
    return [int(m.group(1)) for m in _MARK.finditer(text)]


def without_marks(text: str) -> str:
    """``text`` with its ``[n]`` marks replaced by spaces."""
    return _MARK.sub(" ", text)


def write_marks(marks: tuple[int, ...]) -> str:
    """``marks`` as a reply writes them: ``[1][3]``."""
    return "".join(f"[{n}]" for n in marks)


@dataclass(frozen=True)
class Answer:
    """What ``ask()`` returns, as parts; the chat reply ``text`` is made from them.

    An answer is ``short_answer``, the bare span ("March 31, 2021"), and ``support``, the sentence of the
    passage it comes from, which the reply marks with ``marks``: ``[1]``, ``citations[0]``, the passage
    holding the answer. A decline (``abstained``) says why in ``reason`` ("They never mention Tesla."),
    and its ``citations`` are related reading only. ``confidence`` is the reader's probability for the best
    span it found (also when it declined for want of certainty); None when nothing was read.

    ``language`` is the question's (``"zh"``...): the reply's own words are in it. A question in another
    language than English may be answered by ``support`` alone, the English sentence that answers it,
    under a headline saying that the source is in English.
    """

    abstained: bool
    citations: list[Citation] = field(default_factory=list)
    short_answer: str | None = None
    support: str | None = None
    reason: str | None = None
    question_type: str = "phrase"
    confidence: float | None = None
    language: str = "en"

    @property
    def marks(self) -> tuple[int, ...]:
        """The citations the reply marks, by number (``citations[n-1]``)."""
        return () if self.abstained or not self.support else (1,)

    @property
    def headline(self) -> str:
        """The reply's first line: the short answer as a sentence, that the source is in English (a
        sentence without a short answer), or the decline and why."""
        if self.abstained or not (self.short_answer or self.support):
            return " ".join(part for part in (message(self.language, "decline"), self.reason) if part)
        if not self.short_answer:
            return message(self.language, "english")
        short = self.short_answer if self.short_answer.endswith(".") else f"{self.short_answer}."
        return short if self.language == "en" else f"{short} {message(self.language, 'english')}"

    @property
    def text(self) -> str:
        """The chat reply: the headline, then the supporting sentence with its ``[n]`` marks."""
        if not self.marks:
            return self.headline
        return f"{self.headline}\n\n{self.support} {write_marks(self.marks)}"

    def to_dict(self) -> dict:
        """The answer as JSON-ready values, ``text`` and ``marks`` included."""
        return {**asdict(self), "headline": self.headline, "text": self.text, "marks": list(self.marks)}


@dataclass(frozen=True)
class GeneratedAnswer:
    """What :func:`rag.ask_stream` ends with: a reply written by a language model from the passages, or,
    when no model wrote one, the extracted reply.

    The model is given ``extracted.citations`` as passages ``[1]..[k]``, so ``text``'s ``[n]`` marks refer
    to ``citations[n-1]`` as in an :class:`Answer`; marks outside ``1..k`` are removed (``dropped``).
    ``generated``: a model wrote ``text``. ``grounded``: it did, and cites at least one passage.
    ``declined``: the model said the passages do not hold the answer. ``disagrees``: the generated text
    does not contain the extracted short answer. ``notices`` say what a reader should know (a fallback
    and why, no citation, a disagreement). ``question`` is what retrieval was given: a follow-up
    rewritten to stand alone, else the question itself.
    """

    text: str
    extracted: Answer
    question: str
    generated: bool = False
    grounded: bool = False
    declined: bool = False
    disagrees: bool = False
    cited: tuple[int, ...] = ()
    dropped: tuple[int, ...] = ()
    notices: tuple[str, ...] = ()

    @property
    def citations(self) -> list[Citation]:
        return self.extracted.citations

    @property
    def short_answer(self) -> str | None:
        """The extracted short answer, kept beside the generated text."""
        return self.extracted.short_answer

    @property
    def abstained(self) -> bool:
        """The documents do not answer: the extractive path abstained (then no model is asked), or the
        model declined."""
        return self.extracted.abstained or self.declined

    @property
    def marks(self) -> tuple[int, ...]:
        """The citations the reply marks: the model's valid ``[n]``, or the extracted reply's."""
        return self.cited if self.generated else self.extracted.marks

    def to_dict(self) -> dict:
        """The result as JSON-ready values, the extracted answer's included."""
        return {**asdict(self), "extracted": self.extracted.to_dict(), "marks": list(self.marks)}
