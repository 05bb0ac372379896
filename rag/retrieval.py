"""Stage 5: hybrid retrieval - dense (FAISS) and lexical (BM25) rankings, fused.

Two fusions are offered. ``rrf``, reciprocal rank fusion (Cormack et al., 2009), reads only ranks. The
default, ``convex``, adds the cosine similarity to the BM25 score divided by the query's best BM25 score
(a convex combination of normalised scores, as in Bruch et al., 2023): unlike RRF it keeps how far ahead
a hit is, so a passage that is the only one naming a rare word of the query is not outvoted by passages
that are merely middling in both rankings.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .chunking import Chunk
from .embedding import embed
from .nlp import terms
from .store import StoredIndex
from .types import Citation

RRF_K = 60  # the constant of Cormack et al. (2009); damps the head of each ranking
CANDIDATES = 30  # how deep each ranking is read before fusing
DENSE_WEIGHT = 0.5  # convex fusion: weight of the cosine; BM25 (normalised) gets the rest
FUSIONS = ("convex", "rrf")


@dataclass(frozen=True)
class Hit:
    chunk: int  # position in Index.chunks
    score: float  # fused score
    dense: float  # cosine similarity of the query and the passage
    lexical: float  # BM25 score


class Index:
    """A loaded index, ready to search. Build one with :func:`rag.open_index`."""

    def __init__(self, stored: StoredIndex, *, fusion: str = "convex"):
        import bm25s

        # bm25s sets its own logger to DEBUG at import; its chatter is not ours to show
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
        self.fusion = fusion
        self.stored = stored
        self.chunks: list[Chunk] = stored.chunks
        tokens = [terms(c.embedding_text) for c in self.chunks]
        self._bm25 = bm25s.BM25()
        if self.chunks:
            self._bm25.index(tokens, show_progress=False)
        # word sets the answering stage reads on every question, made once here: each passage's (with
        # its title), each document's title, and each document's
        self.chunk_terms = [frozenset(toks) for toks in tokens]
        self.title_terms = {c.doc_id: frozenset(terms(c.title)) for c in self.chunks}
        self.doc_terms: dict[str, set[str]] = {}
        for c, toks in zip(self.chunks, tokens, strict=True):
            self.doc_terms.setdefault(c.doc_id, set()).update(toks)
        df = Counter(t for toks in tokens for t in set(toks))
        n = max(len(tokens), 1)
        # BM25's idf, reused to weigh question words when scoring sentences
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self.default_idf = math.log(1 + (n + 0.5) / 0.5)

    @property
    def num_documents(self) -> int:
        return len(self.stored.manifest["documents"])

    @property
    def num_chunks(self) -> int:
        return len(self.chunks)

    def search(self, query: str, *, k: int = 5, query_vector: np.ndarray | None = None) -> list[Hit]:
        if not self.chunks:
            return []
        depth = min(max(CANDIDATES, 4 * k), len(self.chunks))
        if query_vector is None:
            query_vector = embed([query])[0]
        dense_scores, dense_ids = self.stored.vectors.search(query_vector.reshape(1, -1), depth)
        dense = {int(i): float(s) for i, s in zip(dense_ids[0], dense_scores[0], strict=True) if i >= 0}
        lexical = self._bm25_scores(query)
        lex_order = np.argsort(-lexical)[:depth] if lexical is not None else []
        lex_ids = [int(i) for i in lex_order if lexical[i] > 0]
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
        best = sorted(fused, key=lambda i: -fused[i])[:k]
        # a lexical-only hit is scored densely too, so every hit carries both signals
        self._fill_dense(dense, [i for i in best if i not in dense], query_vector)
        return [Hit(i, fused[i], dense[i], float(lexical[i]) if lexical is not None else 0.0) for i in best]

    def _fill_dense(self, dense: dict[int, float], ids: list[int], query_vector: np.ndarray) -> None:
        if ids:
            vecs = np.vstack([self.stored.vectors.reconstruct(i) for i in ids])
            dense.update(zip(ids, (vecs @ query_vector).tolist(), strict=True))

    def _bm25_scores(self, query: str) -> np.ndarray | None:
        vocab = self._bm25.vocab_dict
        toks = [t for t in terms(query) if t in vocab]
        if not toks:
            return None
        return self._bm25.get_scores(toks)

    def citation(
        self, hit: Hit, *, answer: tuple[int, int] | None = None, score: float | None = None
    ) -> Citation:
        c = self.chunks[hit.chunk]
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
        )
