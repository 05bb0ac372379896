"""The corpora of ``python -m eval.bench``: SQuAD paragraphs with sampled questions, and a synthetic corpus.

Both come back as plain records (:class:`BenchDoc`, :class:`BenchQuestion`) that every system under test
indexes the same way, and that the parent process hands to its children as JSON Lines. Nothing here
imports ``rag``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eval.data import Dataset

# Synthetic corpus: words drawn from a fixed made-up vocabulary with Zipf-like frequencies, so BM25 sees
# common and rare terms as in real text; documents short enough to be one chunk in every system (a made-up
# word is about 2.7 cl100k tokens, so 45 words and a title stay under ours' 160-token budget).
VOCABULARY_SIZE = 20_000
WORDS_PER_TITLE = 2
WORDS_PER_DOC = (25, 45)  # uniform range, inclusive
WORDS_PER_SENTENCE = (8, 16)
WORDS_PER_QUERY = (3, 8)
_SYLLABLES = (
    "ba be bi bo bu da de di do du fa fe fi fo fu ga ge gi go gu ka ke ki ko ku la le li lo lu ma me mi mo "
    "mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo vu za ze zi"
).split()


@dataclass(frozen=True)
class BenchDoc:
    """One document as every system receives it: ``text`` is indexed whole (ours chunks it)."""

    id: str
    text: str


@dataclass(frozen=True)
class BenchQuestion:
    """A question with the id of the document that answers it (``gold``) and its gold answers."""

    id: str
    question: str
    gold: str | None
    answers: tuple[str, ...] = ()


def squad_corpus(
    dataset: Dataset, *, questions: int, seed: int, limit_docs: int | None = None
) -> tuple[list[BenchDoc], list[BenchQuestion], list[BenchQuestion]]:
    """SQuAD paragraphs as documents, ``questions`` questions sampled with ``seed``, and warm-up questions.

    A document's text is its article title, a blank line, then the paragraph: every system sees the same
    title, and ours reads the first line as the document's title. ``limit_docs`` keeps a seeded sample of
    paragraphs (in file order) and only the questions they answer. The warm-up questions are drawn from
    the questions not sampled, so warming up never pre-asks a measured question.
    """
    if questions < 1:
        raise ValueError(f"questions must be at least 1, got {questions}")
    passages = dataset.passages
    if limit_docs is not None and limit_docs < len(passages):
        keep = sorted(random.Random(seed).sample(range(len(passages)), limit_docs))
        passages = [passages[i] for i in keep]
    docs = [BenchDoc(id=p.id, text=f"{p.title}\n\n{p.text}") for p in passages]
    ids = {d.id for d in docs}
    pool = [item for item in dataset.items if item.source in ids]
    if not pool:
        raise ValueError("no answerable question has its paragraph among the documents")
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    chosen = sorted(order[:questions])
    rest = order[questions:]
    as_question = [
        BenchQuestion(id=i.id, question=i.question, gold=i.source, answers=i.answers) for i in pool
    ]
    return docs, [as_question[i] for i in chosen], [as_question[i] for i in rest]


def vocabulary(size: int = VOCABULARY_SIZE) -> list[str]:
    """``size`` distinct made-up words of two to four syllables, the same on every run."""
    rng = random.Random(0)
    words: dict[str, None] = {}
    while len(words) < size:
        words["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))] = None
    return list(words)


def _zipf_weights(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()


def synthetic_corpus(n: int, *, seed: int = 0, vocab: list[str] | None = None) -> list[BenchDoc]:
    """``n`` documents, deterministic for a seed: a title line of two vocabulary words, a blank line, then
    25-45 words in sentences of 8-16. (The title line is there because ours takes a document's first line
    as its title.)"""
    vocab = vocab or vocabulary()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(WORDS_PER_DOC[0], WORDS_PER_DOC[1] + 1, size=n) + WORDS_PER_TITLE
    words = rng.choice(len(vocab), size=int(lengths.sum()), p=_zipf_weights(len(vocab)))
    docs: list[BenchDoc] = []
    pos = 0
    for i, length in enumerate(lengths.tolist()):
        doc_words = [vocab[w] for w in words[pos : pos + length]]
        pos += length
        title = " ".join(doc_words[:WORDS_PER_TITLE]).title()
        docs.append(
            BenchDoc(id=f"syn-{i:07d}", text=f"{title}\n\n{_sentences(doc_words[WORDS_PER_TITLE:], rng)}")
        )
    return docs


def _sentences(words: list[str], rng: np.random.Generator) -> str:
    sentences, start = [], 0
    while start < len(words):
        end = start + int(rng.integers(WORDS_PER_SENTENCE[0], WORDS_PER_SENTENCE[1] + 1))
        part = words[start:end]
        sentences.append(part[0].capitalize() + " " + " ".join(part[1:]) + ".")
        start = end
    return " ".join(sentences)


def synthetic_queries(n: int, *, seed: int = 1, vocab: list[str] | None = None) -> list[BenchQuestion]:
    """``n`` queries of 3-8 vocabulary words (same word frequencies as the corpus); they have no gold."""
    vocab = vocab or vocabulary()
    rng = np.random.default_rng(seed)
    weights = _zipf_weights(len(vocab))
    out = []
    for i in range(n):
        length = int(rng.integers(WORDS_PER_QUERY[0], WORDS_PER_QUERY[1] + 1))
        text = " ".join(vocab[w] for w in rng.choice(len(vocab), size=length, p=weights))
        out.append(BenchQuestion(id=f"q-{i:05d}", question=text, gold=None))
    return out


def write_jsonl(path: Path, records: Iterable[BenchDoc | BenchQuestion]) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")


def read_docs(path: Path) -> list[BenchDoc]:
    with Path(path).open(encoding="utf-8") as f:
        return [BenchDoc(**json.loads(line)) for line in f]


def read_questions(path: Path) -> list[BenchQuestion]:
    with Path(path).open(encoding="utf-8") as f:
        return [
            BenchQuestion(r["id"], r["question"], r["gold"], tuple(r["answers"])) for r in map(json.loads, f)
        ]
