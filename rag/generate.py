"""Stage 10, optional: a fluent answer written by a language model from the retrieved passages.

Only with a server configured (:class:`rag.config.LLMSettings`); without one, nothing here runs.

1. A follow-up ("Who signed it?") is first rewritten into a stand-alone question by one short call, so
   retrieval sees what "it" is. A rewrite that is not a question is ignored.
2. The extractive answer comes first (:func:`rag.ask`), and its abstention is final: when the documents
   don't hold the answer, the model is not asked. Its short answer is kept beside the generated one.
3. The passages the extractive answer cites, in its order, are numbered ``[1]..[k]``; the model is told
   to use only them, to mark each claim with ``[n]``, and to answer "not in the documents" when they
   don't say.
4. Marks are filtered while the tokens stream (:class:`CitationFilter`), so a ``[n]`` outside ``1..k``
   is never shown. An answer left without a valid mark is flagged as not grounded; one that does not
   contain the extracted short answer is flagged as disagreeing with it.
5. Whatever goes wrong with the server (:class:`rag.errors.LLMUnavailable`), the reader gets the
   extracted answer with a short notice saying why.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Iterator
from contextlib import closing

from . import llm as client
from .api import _check, _clean_history, ask
from .config import MAX_QUESTION_CHARS, LLMSettings, get_llm_settings
from .errors import LLMUnavailable
from .question import last_turn, message_text
from .retrieval import Index
from .types import Answer, Citation, GeneratedAnswer, without_marks

log = logging.getLogger(__name__)

DECLINE = "not in the documents"
SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages the user gives you. "
    "After each claim, put the number of the passage that supports it in square brackets, like [1] or [2]. "
    f'If the passages do not contain the answer, reply exactly: "{DECLINE}". '
    "Answer in one to three sentences."
)
REWRITE_PROMPT = (
    "Rewrite the user's last question so that it can be understood without the conversation: replace "
    "pronouns and vague references with the names they stand for. Reply with the rewritten question only."
)
REWRITE_TURNS = 4  # earlier messages shown to the rewrite
REWRITE_TURN_CHARS = 400  # each cut to this many characters: the question's subject is near the start
REWRITE_MAX_TOKENS = 64


# --- the prompt ----------------------------------------------------------------------------------


def build_messages(question: str, citations: list[Citation]) -> list[dict]:
    """The chat messages for a grounded answer: the rules, then the passages numbered as cited."""
    passages = "\n\n".join(
        f"[{n}] {c.title}{f' ({c.date})' if c.date else ''}\n{' '.join(c.text.split())}"
        for n, c in enumerate(citations, 1)
    )
    user = f"Passages:\n\n{passages}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def rewrite_messages(question: str, history: list[dict]) -> list[dict]:
    """The chat messages asking for ``question`` rewritten to stand alone, with the last few turns."""
    lines = []
    for turn in history[-REWRITE_TURNS:]:
        role = turn.get("role") if isinstance(turn, dict) else None
        text = " ".join(without_marks(message_text(turn.get("content") if role else "")).split())
        if role in ("user", "assistant") and text:
            lines.append(f"{role.capitalize()}: {text[:REWRITE_TURN_CHARS]}")
    user = "Conversation:\n" + "\n".join(lines) + f"\n\nLast question: {question}\n\nRewritten question:"
    return [{"role": "system", "content": REWRITE_PROMPT}, {"role": "user", "content": user}]


_REWRITE_LABEL = re.compile(r"^\s*(?:(?:rewritten|stand-?alone)\s+)?question\s*:\s*", re.I)


def parse_rewrite(reply: str, question: str) -> str:
    """The rewritten question from the model's reply, or ``question`` when the reply is not a question
    (a small model may answer it instead) or is empty or too long."""
    line = next((ln for ln in reply.splitlines() if ln.strip()), "")
    line = _REWRITE_LABEL.sub("", line).strip().strip("\"'“”‘’`*").strip()
    if (
        not line.endswith("?")
        or len(line) < 3
        or len(line) > min(MAX_QUESTION_CHARS, 4 * len(question) + 300)
    ):
        return question
    return line


def standalone_question(question: str, history: list[dict] | None, llm: LLMSettings) -> str:
    """``question`` rewritten to be understood without ``history``; itself when there is no earlier
    question. Raises :class:`LLMUnavailable` when the server fails."""
    if not history or last_turn(history, "user") is None:
        return question
    reply = client.complete(llm, rewrite_messages(question, history), max_tokens=REWRITE_MAX_TOKENS)
    return parse_rewrite(reply, question)


# --- citation marks ------------------------------------------------------------------------------

# [3], [1, 2], [1-3], [Passage 2], [passages 1 and 4]: the forms models write; anything else is text
_NUM = r"(?:(?:passages?|sources?)\s*)?\d{1,4}(?:\s*[-–]\s*\d{1,4})?"
_ANY_MARK = re.compile(rf"[ \t]*\[\s*({_NUM}(?:\s*(?:,|;|&|and)\s*{_NUM})*)\s*\]", re.I)
MAX_MARK_CHARS = 48  # an unclosed "[" further back than this is text, not the start of a mark


class CitationFilter:
    """Keeps the ``[n]`` marks that name one of ``passages`` passages and drops the rest, as text streams.

    :meth:`feed` takes each delta and returns what can be shown already: text after an unclosed ``[``
    (and white space before it) waits until the mark closes. ``[1, 2]`` becomes ``[1][2]``. Feeding a
    text in any pieces gives the same result as feeding it whole.
    """

    def __init__(self, passages: int):
        self.passages = passages
        self.cited: list[int] = []  # valid marks, in order of first use
        self.dropped: list[int] = []  # marks that named no passage given
        self._held = ""

    def feed(self, delta: str) -> str:
        text = self._held + delta
        cut = len(text)
        i = text.rfind("[")
        if i >= 0 and "]" not in text[i:] and "\n" not in text[i:] and len(text) - i <= MAX_MARK_CHARS:
            cut = i
        while cut > 0 and text[cut - 1] in " \t":
            cut -= 1
        self._held = text[cut:]
        return _ANY_MARK.sub(self._mark, text[:cut])

    def flush(self) -> str:
        text, self._held = self._held, ""
        return _ANY_MARK.sub(self._mark, text)

    def _mark(self, m: re.Match) -> str:
        kept = []
        for part in re.split(r"\s*(?:,|;|&|and)\s*", m.group(1), flags=re.I):
            digits = [int(x) for x in re.findall(r"\d+", part)]
            numbers = (
                range(digits[0], digits[-1] + 1)
                if len(digits) == 2 and 0 <= digits[1] - digits[0] < 10
                else digits
            )
            for n in numbers:
                if 1 <= n <= self.passages:
                    kept.append(n)
                    if n not in self.cited:
                        self.cited.append(n)
                else:
                    self.dropped.append(n)
        if not kept:
            return ""
        lead = m.group(0)[: len(m.group(0)) - len(m.group(0).lstrip(" \t"))]
        return lead + "".join(f"[{n}]" for n in dict.fromkeys(kept))


def filter_citations(text: str, passages: int) -> tuple[str, list[int], list[int]]:
    """``text`` with only marks in ``1..passages`` kept; the kept numbers and the dropped ones."""
    f = CitationFilter(passages)
    out = f.feed(text) + f.flush()
    return out, f.cited, f.dropped


# --- comparing with the extracted answer -----------------------------------------------------------

_DECLINED = re.compile(
    r"\bnot (?:in|found in|mentioned in|given in|stated in|in any of) the (?:documents|passages)\b"
    r"|\b(?:documents|passages) (?:do not|don't|does not|doesn't) (?:say|mention|contain|state)\b",
    re.I,
)
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}“”‘’«»–—…]")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalise(text: str) -> str:
    """Lower case, no punctuation, marks or articles, single spaces: for comparing two answers."""
    text = _PUNCTUATION.sub(" ", without_marks(text).lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def contains(text: str, short: str) -> bool:
    """Whether ``short`` occurs in ``text`` as whole words, after :func:`normalise`."""
    needle = normalise(short)
    return bool(needle) and f" {needle} " in f" {normalise(text)} "


# --- the answer ----------------------------------------------------------------------------------


class Generation:
    """A generated answer as it is written. Iterate for the text as it streams (only the model's words,
    citation marks already filtered), then call :meth:`result` for the :class:`GeneratedAnswer`.

    When the model fails, even part-way, iteration just stops and ``result()`` holds the extracted
    answer with a notice: a reader that showed the streamed words should replace them with it. When no
    model is asked (none configured, or the documents don't hold the answer), nothing is streamed.
    """

    def __init__(self, extracted: Answer, question: str, llm: LLMSettings | None, error: str | None = None):
        self.extracted = extracted
        self.question = question
        self._llm = llm
        self._error = error  # the server already failed (rewriting the question): don't ask it again
        self._result: GeneratedAnswer | None = None
        self._started = False

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a Generation can be iterated once; call result() for the answer")
        self._started = True
        if self._llm is None or self.extracted.abstained:
            self._result = GeneratedAnswer(self.extracted.text, self.extracted, self.question)
            return
        if self._error:
            self._result = self._fallback(self._error)
            return
        marks = CitationFilter(len(self.extracted.citations))
        messages = build_messages(self.question, self.extracted.citations)
        shown = []
        try:
            with closing(client.chat_stream(self._llm, messages)) as stream:
                for delta in stream:
                    out = marks.feed(delta)
                    if out:
                        shown.append(out)
                        yield out
            out = marks.flush()
            if out:
                shown.append(out)
                yield out
        except LLMUnavailable as e:
            self._result = self._fallback(str(e))
            return
        self._result = self._finish("".join(shown).strip(), marks)

    def result(self) -> GeneratedAnswer:
        """The finished answer, streaming whatever is left first."""
        if self._result is None and not self._started:
            for _ in self:
                pass
        if self._result is None:
            raise RuntimeError("the Generation was abandoned part-way; its answer was never finished")
        return self._result

    def _fallback(self, reason: str) -> GeneratedAnswer:
        log.warning("language model failed, showing the extracted answer: %s", reason)
        notice = f"The language model gave no answer ({reason}), so this is the extracted answer."
        return GeneratedAnswer(self.extracted.text, self.extracted, self.question, notices=(notice,))

    def _finish(self, text: str, marks: CitationFilter) -> GeneratedAnswer:
        if not text:
            return self._fallback("it sent an empty reply")
        cited, dropped = tuple(marks.cited), tuple(marks.dropped)
        declined = not cited and bool(_DECLINED.search(text))
        short = self.extracted.short_answer
        # a "why"/"how" answer is a whole sentence, which a fluent reply paraphrases rather than quotes
        disagrees = bool(short) and self.extracted.question_type != "explain" and not contains(text, short)
        notices = []
        if declined:
            notices.append(
                "The language model found no answer in the passages; the extracted answer may help."
            )
        elif not cited:
            notices.append("This generated answer cites none of the passages, so it is not grounded in them.")
        if disagrees and not declined:
            notices.append(f"It does not contain the extracted answer, “{short}” [1]: check the sources.")
        if dropped:
            n = len(dropped)
            marks = f"{n} citation mark{'s' * (n != 1)} naming no passage given"
            notices.append(f"{marks} {'were' if n != 1 else 'was'} removed.")
        return GeneratedAnswer(
            text,
            self.extracted,
            self.question,
            generated=True,
            grounded=bool(cited),
            declined=declined,
            disagrees=disagrees,
            cited=cited,
            dropped=dropped,
            notices=tuple(notices),
        )


def ask_stream(
    question: str,
    *,
    history: list[dict] | None = None,
    k: int = 5,
    index: Index | None = None,
    llm: LLMSettings | None = None,
) -> Generation:
    """Answer ``question`` with a language model, from the passages the extractive answer cites.

    ``llm`` defaults to the configured server (``RAG_LLM_BASE_URL``...); with none, the result is the
    extractive answer (:func:`rag.ask`) and nothing is streamed. Retrieval and the extractive answer
    happen here, before the returned :class:`Generation` streams. Raises what :func:`rag.ask` raises
    (an invalid question); never raises for a server that fails.
    """
    question, history = _check(question), _clean_history(history)
    llm = llm if llm is not None else get_llm_settings()
    if llm is None:
        return Generation(ask(question, history=history, k=k, index=index), question, None)
    error = None
    try:
        standalone = standalone_question(question, history, llm)
    except LLMUnavailable as e:
        standalone, error = question, str(e)
    extracted = ask(standalone, history=history, k=k, index=index)
    if standalone != question and extracted.abstained:
        # the rewrite may have lost or invented a name: the question as asked is the extractive baseline
        plain = ask(question, history=history, k=k, index=index)
        if not plain.abstained:
            extracted, standalone = plain, question
    return Generation(extracted, standalone, llm, error)


def generate_answer(
    question: str,
    *,
    history: list[dict] | None = None,
    k: int = 5,
    index: Index | None = None,
    llm: LLMSettings | None = None,
) -> GeneratedAnswer:
    """:func:`ask_stream`, waiting for the whole answer."""
    return ask_stream(question, history=history, k=k, index=index, llm=llm).result()
