"""Stage 5: hybrid retrieval - dense (FAISS) and lexical (BM25) rankings, fused.

Two fusions are offered. ``rrf``, reciprocal rank fusion (Cormack et al., 2009), reads only ranks. The
default, ``convex``, adds the cosine similarity to the BM25 score divided by the query's best BM25 score
(a convex combination of normalised scores, as in Bruch et al., 2023): unlike RRF it keeps how far ahead
a hit is, so a passage that is the only one naming a rare word of the query is not outvoted by passages
that are merely middling in both rankings.

A second stage re-scores the best fused hits by adding their best sentence's cosine with the query: the
sentence vectors come free with the index (see :func:`rag.embedding.encode_passages`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .chunking import Passage
from .embedding import embed_query
from .nlp import terms
from .store import DocumentInfo, StoredIndex
from .types import Citation

RRF_K = 60  # the constant of Cormack et al. (2009); damps the head of each ranking
CANDIDATES = 30  # how deep each ranking is read before fusing
DENSE_WEIGHT = 0.5  # convex fusion: weight of the cosine; BM25 (normalised) gets the rest
FUSIONS = ("convex", "rrf")
RESCORE = 20  # fused hits re-scored by their best sentence
SENTENCE_WEIGHT = 1.0  # weight of a passage's best sentence cosine in the second stage
MAX_REPEATED = 0.5  # share of a passage already in better ones of its document beyond which it gives way


@dataclass(frozen=True)
class Hit:
    row: int  # position in Index.passages
    score: float  # fused score
    dense: float  # cosine similarity of the query and the passage
    lexical: float  # BM25 score


class Index:
    """A loaded index, ready to search: :meth:`Index.build` brings one up to date with its documents,
    :meth:`Index.open` opens one as built; then ``index.ask(...)`` and ``index.retrieve(...)``.

    Opening one reads no passage: word sets and document frequencies are looked up when a question
    needs them, so the first answer after start is fast at any index size.
    """

    def __init__(self, stored: StoredIndex, *, fusion: str = "convex"):
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
        self.fusion = fusion
        self._stored = stored
        import faiss

        # One question at a time: a single thread. With two, OpenMP's hand-off costs more than it saves
        # (one exact query over 100,000 vectors: 18 ms on one thread, 70 ms on two, on this 2-core CPU).
        faiss.omp_set_num_threads(1)
        self._passages: Sequence[Passage] = stored.passages
        self._idf = Idf(stored.bm25, len(self._passages))
        self._cross: tuple[np.ndarray, np.ndarray] | None = None  # float32 passage and word vectors

    @classmethod
    def build(cls, source: Path | None = None, **options) -> Index:
        """Bring the index at ``index_dir`` (default ``RAG_INDEX_DIR``) up to date with ``source`` (default
        ``RAG_SOURCE_DIR``) or with ``documents``, embedding only what changed, and open it; ``options``
        are :func:`rag.open_index`'s. Waits for another build of the same folder, and raises
        :class:`rag.IndexUpdateFailed` when it cannot write."""
        from .api import open_index

        return open_index(source=source, strict=True, **options)

    @classmethod
    def open(cls, index_dir: Path | None = None, *, fusion: str = "convex", chunking=None) -> Index:
        """The index built at ``index_dir`` (default ``RAG_INDEX_DIR``), as it is: nothing is read from the
        documents and nothing is written. Raises :class:`rag.IndexNotFound` when there is none, and
        :class:`rag.IndexMismatch` or :class:`rag.IndexDamaged` when it must be rebuilt."""
        from .config import get_settings
        from .store import load

        settings = get_settings()
        folder = Path(index_dir) if index_dir is not None else settings.index_dir
        return cls(load(folder, chunking or settings.chunk), fusion=fusion)

    def ask(self, question: str, *, history: list[dict] | None = None, k: int = 5):
        """:func:`rag.ask` over this index."""
        from .api import ask

        return ask(question, history=history, k=k, index=self)

    def retrieve(self, query: str, *, k: int = 5):
        """:func:`rag.retrieve` over this index."""
        from .api import retrieve

        return retrieve(query, k=k, index=self)

    @property
    def passages(self) -> Sequence[Passage]:
        """The indexed passages, in index order (a :class:`Hit`'s ``row``), read from disk when asked for."""
        return self._passages

    @property
    def documents(self) -> Mapping[str, DocumentInfo]:
        """The indexed documents by id: title, date, pages and their passages' rows."""
        return self._stored.documents

    @property
    def num_documents(self) -> int:
        return len(self._stored.documents)

    @property
    def num_passages(self) -> int:
        return len(self._passages)

    @property
    def multilingual(self) -> bool:
        """Whether the passages have multilingual vectors, so questions in other languages can be read."""
        return self._stored.multilingual is not None

    def search_multilingual(
        self, queries: list[str], *, k: int = 5, query_vectors: np.ndarray | None = None
    ) -> list[Hit]:
        """Passages for a question in another language than English: each passage's best cosine with
        the multilingual vectors of ``queries`` (the question; and for a follow-up, the question with
        the one before it), fused as an English question's cosine is (:data:`DENSE_WEIGHT`) with BM25,
        normalised to the best, over the words that still match across languages
        (:func:`rag.multilingual.lexical_query`) and the documents' words nearest to the question's
        (:func:`rag.multilingual.nearest_words`). ``query_vectors``: those of ``queries``, when the caller
        has them already."""
        from . import multilingual

        if self._stored.multilingual is None or not len(self._stored.multilingual):
            return []
        if self._cross is None:  # read once, on the first question in another language
            self._cross = (
                np.asarray(self._stored.multilingual, dtype=np.float32),
                np.asarray(self._stored.word_vectors, dtype=np.float32),
            )
        passage_vectors, word_vectors = self._cross
        if query_vectors is None:
            query_vectors = multilingual.encode(queries)
        dense = (passage_vectors @ query_vectors.T).max(axis=1)
        words = multilingual.nearest_words(queries[0], self._stored.words, word_vectors)
        lexical = self._bm25_scores(" ".join([multilingual.lexical_query(queries[0]), *words]))
        fused = DENSE_WEIGHT * dense
        if lexical is not None and lexical.max() > 0:
            fused += (1 - DENSE_WEIGHT) * lexical / lexical.max()
        depth = min(max(RESCORE, k), len(fused))
        best = np.argpartition(-fused, depth - 1)[:depth]
        ranked = self._distinct([int(i) for i in best[np.argsort(-fused[best], kind="stable")]], k)
        lex = lexical if lexical is not None else np.zeros(len(fused))
        return [Hit(i, float(fused[i]), float(dense[i]), float(lex[i])) for i in ranked]

    def knows(self, word: str) -> bool:
        """Whether every search term of ``word`` is in some passage (a name no document holds is not)."""
        return all(t in self._idf for t in terms(word))

    def search(self, query: str, *, k: int = 5, query_vector: np.ndarray | None = None) -> list[Hit]:
        if not self._passages:
            return []
        depth = min(max(CANDIDATES, 4 * k), len(self._passages))
        if query_vector is None:
            query_vector = embed_query(query)
        dense_scores, dense_ids = self._stored.vectors.search(query_vector.reshape(1, -1), depth)
        dense = {int(i): float(s) for i, s in zip(dense_ids[0], dense_scores[0], strict=True) if i >= 0}
        lexical = self._bm25_scores(query)
        lex_ids = _top(lexical, depth) if lexical is not None else []
        if self.fusion == "rrf":
            fused: dict[int, float] = {}
            for ranking in (list(dense), lex_ids):
                for rank, i in enumerate(ranking):
                    fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
        else:
            self._fill_dense(dense, [i for i in lex_ids if i not in dense], query_vector)
            top = float(lexical[lex_ids[0]]) if lex_ids else 1.0
            fused = {
                i: DENSE_WEIGHT * dense[i]
                + (1 - DENSE_WEIGHT) * (float(lexical[i]) / top if lexical is not None else 0.0)
                for i in dense
            }
        best = sorted(fused, key=lambda i: -fused[i])[: max(RESCORE, k)]
        # a lexical-only hit is scored densely too, so every hit carries both signals
        self._fill_dense(dense, [i for i in best if i not in dense], query_vector)
        # second stage: a passage that holds one sentence matching the question closely beats one that
        # matches it loosely all over (the passage vector averages its sentences away)
        for i, sim in zip(best, self._best_sentence(best, query_vector), strict=True):
            fused[i] += SENTENCE_WEIGHT * sim
        best = self._distinct(sorted(best, key=lambda i: -fused[i]), k)
        return [Hit(i, fused[i], dense[i], float(lexical[i]) if lexical is not None else 0.0) for i in best]

    def _distinct(self, ranked: list[int], k: int) -> list[int]:
        """The first ``k`` of ``ranked``, passing over a passage whose text is mostly in better ones of its
        document (chunks share sentences at their seams): the slot goes to other evidence. Those fill in
        only when there is nothing else. A passage between two chosen ones that share only their seams
        with it still has most of its own to say."""
        chosen: list[int] = []
        spare: list[int] = []
        for i in ranked:
            c = self._passages[i]
            shared = sum(_overlap(c, self._passages[j]) for j in chosen)
            if shared > MAX_REPEATED * (c.end - c.start):
                spare.append(i)
            else:
                chosen.append(i)
            if len(chosen) == k:
                return chosen
        return chosen + spare[: k - len(chosen)]

    def _best_sentence(self, ids: list[int], query_vector: np.ndarray) -> list[float]:
        """Each passage's highest sentence cosine with the query."""
        spans = [self._stored.sentence_rows(i) for i in ids]
        rows = np.concatenate([np.arange(r.start, r.stop) for r in spans]) if spans else np.zeros(0, int)
        if not len(rows):
            return [0.0] * len(ids)
        sims = np.asarray(self._stored.sentence_vectors[rows], dtype=np.float32) @ query_vector
        out, pos = [], 0
        for r in spans:
            out.append(float(sims[pos : pos + len(r)].max()) if len(r) else 0.0)
            pos += len(r)
        return out

    def _fill_dense(self, dense: dict[int, float], ids: list[int], query_vector: np.ndarray) -> None:
        if ids:
            vecs = np.vstack([self._stored.vectors.reconstruct(i) for i in ids])
            dense.update(zip(ids, (vecs @ query_vector).tolist(), strict=True))

    def _bm25_scores(self, query: str) -> np.ndarray | None:
        bm25 = self._stored.bm25
        toks = [t for t in terms(query) if bm25 is not None and t in bm25.vocab_dict]
        if not toks:
            return None
        return bm25.get_scores(toks)

    def citation(
        self, hit: Hit, *, answer: tuple[int, int] | None = None, score: float | None = None
    ) -> Citation:
        c = self._passages[hit.row]
        doc = self._stored.documents.get(c.doc_id)
        pages = doc.pages if doc is not None else None
        # the page of the answer when there is one, else of the passage's first line
        where = c.start + (answer[0] if answer else 0)
        return Citation(
            source=c.doc_id,
            title=c.title,
            date=c.date,
            text=c.text,
            start=c.start,
            end=c.end,
            score=round(hit.score if score is None else score, 4),
            answer_start=answer[0] if answer else None,
            answer_end=answer[1] if answer else None,
            page=bisect.bisect_right(pages, where) if pages else None,
        )


def _overlap(a: Passage, b: Passage) -> int:
    """Characters two passages share."""
    return max(0, min(a.end, b.end) - max(a.start, b.start)) if a.doc_id == b.doc_id else 0


def _top(scores: np.ndarray, n: int) -> list[int]:
    """Positions of the ``n`` highest positive scores, best first, without sorting them all."""
    if n < len(scores):
        part = np.argpartition(-scores, n)[:n]
    else:
        part = np.arange(len(scores))
    part = part[np.argsort(-scores[part], kind="stable")]
    return [int(i) for i in part if scores[i] > 0]


class Idf(Mapping[str, float]):
    """BM25's idf of each indexed word, read from the postings' lengths when first asked for;
    reused to weigh a question's words when scoring sentences."""

    def __init__(self, bm25, num_chunks: int):
        self._bm25 = bm25
        self._n = max(num_chunks, 1)
        self._cache: dict[str, float] = {}
        self.default = math.log(1 + (self._n + 0.5) / 0.5)  # a word no passage has

    def __getitem__(self, term: str) -> float:
        if term not in self._cache:
            col = self._bm25.vocab_dict[term] if self._bm25 is not None else None
            if col is None:
                raise KeyError(term)
            indptr = self._bm25.scores["indptr"]
            df = int(indptr[col + 1] - indptr[col])
            if df == 0:
                raise KeyError(term)
            self._cache[term] = math.log(1 + (self._n - df + 0.5) / (df + 0.5))
        return self._cache[term]

    def __contains__(self, term: object) -> bool:
        try:
            self[term]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return (t for t in (self._bm25.vocab_dict if self._bm25 is not None else ()) if t in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)
