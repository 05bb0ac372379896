"""Stage 4: where an index lives - the one interface retrieval and builds use to read a built index.

Two backends implement it:

* local files (the default): FAISS for the passage vectors, bm25s for BM25, JSON Lines and numpy arrays
  for the rest, in a folder (:class:`rag.store.StoredIndex`, written by :mod:`rag.generation`);
* Milvus (optional, ``pip install -e ".[milvus]"``): the same data in Milvus collections, on Milvus Lite (a
  file) or a Milvus server or cluster (:class:`rag.milvus.MilvusIndex`, written by the same module).

Rows are passages, numbered 0..n-1 in index order; a document's passages are consecutive. Scores are the
same on both: cosine similarity (vectors are unit length) and BM25 (k1 1.5, b 0.75) over the passages'
search terms (:func:`rag.nlp.terms`), so one question ranks the same passages first on either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from .chunking import Passage
from .multilingual import Match


class PassageRecords(Protocol):
    """The passages by row (a sequence of :class:`rag.chunking.Passage`), and each one's record."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Passage: ...

    def raw(self, i: int) -> bytes:
        """Passage ``i`` as its JSON Lines record (``chunks.jsonl``'s line), as a build copies it."""
        ...


class Store(Protocol):
    """A built index, opened for reading."""

    location: str  # where it is, for messages: a folder, or a Milvus URI and collection
    manifest: dict  # settings, documents, skipped files (rag.store describes the fields)
    # threads a question is embedded on: 1 where the index searches in a process of its own on this
    # machine while the question is embedded (Milvus Lite), which leaves that process a core
    query_threads: int

    @property
    def passages(self) -> PassageRecords: ...

    @property
    def documents(self) -> Mapping: ...  # id -> rag.store.DocumentInfo

    @property
    def has_multilingual(self) -> bool:
        """Whether passages have multilingual vectors (:mod:`rag.multilingual`)."""
        ...

    def document_passages(self, doc_id: str) -> range: ...

    def newer(self) -> Store | None:
        """The build in use now, where one made elsewhere replaced this one (an index on a server that
        other processes build); else None."""
        ...

    def prefetch(self, rows: Sequence[int], *, multilingual: bool) -> None:
        """Fetch ahead what a build copies of ``rows`` (a store on a server: in a few requests)."""
        ...

    def dense(self, query: np.ndarray, depth: int) -> list[tuple[int, float]]:
        """The ``depth`` passages nearest ``query`` (a unit vector) by cosine, best first: (row, cosine)."""
        ...

    def passage_vectors(self, rows: Sequence[int]) -> np.ndarray:
        """The passage vectors of ``rows``, in that order (float32)."""
        ...

    def lexical(self, terms: list[str], depth: int) -> list[tuple[int, float]]:
        """The ``depth`` passages with the highest BM25 score for ``terms``, best first; only scores > 0."""
        ...

    def lexical_later(self, terms: list[str], depth: int) -> Callable[[], list[tuple[int, float]]]:
        """:meth:`lexical`, started now; the function returned gives its result. A store that searches
        on a server runs it meanwhile, while the question is embedded and searched by vector."""
        ...

    def lexical_scores(self, terms: list[str], rows: Sequence[int]) -> np.ndarray:
        """BM25 scores of ``rows`` for ``terms``, in that order (0 where no term occurs)."""
        ...

    def document_frequency(self, term: str) -> int:
        """How many passages hold the search term ``term``."""
        ...

    def known_terms(self, terms: Iterable[str]) -> set[str]:
        """Those of ``terms`` that some passage holds (many at once: the spellings near a name)."""
        ...

    def passage_sentences(self, rows: Sequence[int]) -> list[np.ndarray]:
        """For each of ``rows``, its sentences' vectors (sentences x dimension, float16 or float32)."""
        ...

    def multilingual_dense(self, queries: np.ndarray, depth: int) -> list[tuple[int, float]]:
        """The ``depth`` passages with the highest multilingual cosine with any row of ``queries``, best
        first, each with its best cosine over them."""
        ...

    def multilingual_vectors(self, rows: Sequence[int]) -> np.ndarray:
        """The multilingual passage vectors of ``rows``, in that order (float32)."""
        ...

    def word_matches(self, pieces: np.ndarray) -> list[Match]:
        """For each row of ``pieces`` (multilingual vectors of a question's words), the passages' English
        word nearest it and their cosine, when near enough (:data:`rag.multilingual.MIN_WORD_SIMILARITY`),
        else None."""
        ...

    def known_word_vectors(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        """The multilingual vectors the index holds for those of ``words`` it has (a build reuses them)."""
        ...


def best_by_row(pairs: Sequence[tuple[int, float]], depth: int) -> list[tuple[int, float]]:
    """Hits of several queries merged: each row once with its best score, best first, at most ``depth``."""
    best: dict[int, float] = {}
    for row, score in pairs:
        if score > best.get(row, -np.inf):
            best[row] = score
    return sorted(best.items(), key=lambda p: -p[1])[:depth]
