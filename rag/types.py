"""Result types shared by every stage: what the library hands back to callers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """One source document. ``text`` is the whole file as read, so offsets index into the original."""

    id: str  # the file name (relative to the source folder)
    title: str
    date: str | None
    text: str


@dataclass(frozen=True)
class Citation:
    """A passage that supports an answer (or a retrieval hit).

    ``start``/``end`` are character offsets of ``text`` in the source file, so
    ``source_text[start:end] == text``. ``answer_start``/``answer_end`` locate the
    answer span inside ``text`` when there is one.
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

    @property
    def answer(self) -> str | None:
        if self.answer_start is None or self.answer_end is None:
            return None
        return self.text[self.answer_start : self.answer_end]


@dataclass(frozen=True)
class Answer:
    """What ``ask()`` returns: the reply, whether it abstained, and its citations (best first).

    ``short_answer`` is the bare extracted answer ("March 31, 2021"); ``text`` is the chat reply,
    whose ``[n]`` marks refer to ``citations[n-1]``.
    """

    text: str
    abstained: bool
    citations: list[Citation] = field(default_factory=list)
    short_answer: str | None = None
    question_type: str = "phrase"
