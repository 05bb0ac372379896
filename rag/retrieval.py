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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backend import Store
from .chunking import Passage
from .embedding import embed_query
from .multilingual import MIN_VECTOR_LETTERS, Gloss, Match
from .nlp import near_terms, terms
from .store import DocumentInfo
from .types import Citation

RRF_K = 60  # the constant of Cormack et al. (2009); damps the head of each ranking
CANDIDATES = 30  # how deep each ranking is read before fusing
DENSE_WEIGHT = 0.5  # convex fusion: weight of the cosine; BM25 (normalised) gets the rest
FUSIONS = ("convex", "rrf")
RESCORE = 20  # fused hits re-scored by their best sentence
SENTENCE_WEIGHT = 1.0  # weight of a passage's best sentence cosine in the second stage
MAX_KEPT_MATCHES = 50_000  # pieces of questions in other languages (and words) whose lookups are kept
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

    def __init__(self, stored: Store, *, fusion: str = "convex"):
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
        self.fusion = fusion
        self._stored = stored
        self._passages: Sequence[Passage] = stored.passages
        self._matches: dict[str, Match] = {}  # a question's piece -> the documents' word nearest it
        self._held_words: dict[str, bool] = {}  # a word -> whether the documents hold it

    @classmethod
    def build(cls, source: Path | None = None, **options) -> Index:
        """Bring the index at ``index_dir`` (default ``RAG_INDEX_DIR``) up to date with ``source`` (default
        ``RAG_SOURCE_DIR``) or with ``documents``, embedding only what changed, and open it; ``options``
        are :func:`rag.open_index`'s. Waits for another build of the same folder, and raises
        :class:`rag.IndexUpdateFailed` when it cannot write."""
        from .api import open_index

        return open_index(source=source, strict=True, **options)

    @classmethod
    def open(
        cls, index_dir: Path | None = None, *, fusion: str = "convex", chunking=None, milvus=None
    ) -> Index:
        """The index built at ``index_dir`` (default ``RAG_INDEX_DIR``), or in Milvus (``milvus``: a
        :class:`rag.config.MilvusSettings`; default ``RAG_INDEX_URI``), as it is: nothing is read from the
        documents and nothing is written. Raises :class:`rag.IndexNotFound` when there is none, and
        :class:`rag.IndexMismatch` or :class:`rag.IndexDamaged` when it must be rebuilt."""
        from .config import get_settings
        from .store import load

        settings = get_settings()
        chunk = chunking or settings.chunk
        milvus = milvus if milvus is not None else (settings.milvus if index_dir is None else None)
        if milvus is not None:
            from .milvus_target import MilvusTarget

            return cls(MilvusTarget(milvus).load(chunk), fusion=fusion)
        folder = Path(index_dir) if index_dir is not None else settings.index_dir
        return cls(load(folder, chunk), fusion=fusion)

    def latest(self) -> Index:
        """This index, or the one in use now where a build elsewhere replaced it: an index in Milvus, which
        ``python -m index build`` updates while chat servers read it. A folder index is brought up to
        date by :meth:`build` instead, so it is returned as it is."""
        store = self._stored.newer()
        return Index(store, fusion=self.fusion) if store is not None else self

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
        return self._stored.has_multilingual

    def search_multilingual(
        self,
        queries: list[str],
        *,
        k: int = 5,
        query_vectors: np.ndarray | None = None,
        gloss: Gloss | None = None,
    ) -> list[Hit]:
        """Passages for a question in another language than English: each passage's best cosine with
        the multilingual vectors of ``queries`` (the question; and for a follow-up, the question with
        the one before it), fused as an English question's cosine is (:data:`DENSE_WEIGHT`) with BM25,
        normalised to the best, over the words that still match across languages
        (:func:`rag.multilingual.lexical_query`), the documents' words nearest to the question's
        (:func:`rag.multilingual.nearest_words`) and the question's words rendered in the documents'
        English (:meth:`gloss`: the dictionary's "governor" for 省长, where the nearest word may be
        "province"). ``query_vectors``, ``gloss``: those of ``queries`` and of the question, when the
        caller has them already."""
        from . import multilingual

        store = self._stored
        if not store.has_multilingual or not len(self._passages):
            return []
        if query_vectors is None:
            query_vectors = multilingual.encode(queries)
        depth = min(max(CANDIDATES, RESCORE, 4 * k), len(self._passages))
        dense = dict(store.multilingual_dense(query_vectors, depth))
        pieces = multilingual.word_pieces(queries[0])
        matches = multilingual.named(pieces, self._word_matches(pieces), self._known_words)
        words = sorted({m[0] for m in matches if m})
        if gloss is None:
            gloss = self.gloss(queries[0])
        toks = terms(" ".join([multilingual.lexical_query(queries[0]), *words, gloss.text]))
        lex_top = store.lexical(toks, depth)
        lexical = dict(lex_top)
        only_lexical = [i for i in lexical if i not in dense]
        if only_lexical:
            sims = (store.multilingual_vectors(only_lexical) @ query_vectors.T).max(axis=1)
            dense.update(zip(only_lexical, sims.tolist(), strict=True))
        self._fill_lexical(lexical, toks, list(dense))
        fused = _convex(dense, lexical, lex_top)
        ranked = self._distinct(sorted(fused, key=lambda i: (-fused[i], i))[: max(RESCORE, k)], k)
        return [Hit(i, fused[i], dense[i], lexical[i]) for i in ranked]

    def gloss(self, question: str) -> Gloss:
        """``question``, in another language than English, rendered word by word in the documents'
        English for the English reader (:func:`rag.multilingual.gloss`): "火山里在监测什么气体？" ->
        "what volcano monitor gas?"."""
        from . import multilingual

        if not self._stored.has_multilingual:
            return multilingual.Gloss("")
        return multilingual.gloss(question, self._word_matches, self._known_words)

    def _known_words(self, words: list[str]) -> set[str]:
        """Those of ``words`` that are words of the documents' (their multilingual vectors are kept, or,
        for a word too short to have one, a search term is), remembered: the pinyin of a question's pieces
        is looked up for its retrieval and for its gloss."""
        held = self._held_words
        todo = [w for w in words if w not in held]
        found = set(self._stored.known_word_vectors(todo)) if todo else set()
        # words of under three letters have no multilingual vector ("hu" of "胡玉亭", "hu yuting"): those the
        # passages hold as search terms are words of theirs
        found |= self._stored.known_terms([w for w in todo if len(w) < MIN_VECTOR_LETTERS])
        if len(held) + len(todo) > MAX_KEPT_MATCHES:
            held.clear()
        held.update((w, w in found) for w in todo)
        return {w for w in words if w in found or held.get(w)}

    def _word_matches(self, pieces: list[str]) -> list[Match]:
        """The documents' word nearest each piece of a question (:meth:`Store.word_matches`), kept: a
        question's pieces are looked up for its retrieval and again for its gloss, and many recur
        ("汽车", "长春") from question to question."""
        from . import multilingual

        known = self._matches
        todo = [p for p in dict.fromkeys(pieces) if p not in known]
        if todo:
            if len(known) + len(todo) > MAX_KEPT_MATCHES:
                known.clear()
            known.update(zip(todo, self._stored.word_matches(multilingual.encode(todo)), strict=True))
        return [known[p] for p in pieces]

    def knows(self, word: str) -> bool:
        """Whether every search term of ``word`` is in some passage (a name no document holds is not),
        or, for a word misspelt, a spelling one letter away ("Bismark" for "Bismarck"; in "Merceds-Benz",
        each part)."""
        store = self._stored
        return all(
            all(store.document_frequency(t) > 0 for t in terms(part))
            or bool(store.known_terms(near_terms(part)))
            for part in word.split("-")
        )

    def search(self, query: str, *, k: int = 5, query_vector: np.ndarray | None = None) -> list[Hit]:
        if not self._passages:
            return []
        depth = min(max(CANDIDATES, 4 * k), len(self._passages))
        store = self._stored
        toks = terms(query)
        lexical_hits = store.lexical_later(toks, depth)  # on a server, it runs while the question is embedded
        if query_vector is None:
            query_vector = embed_query(query, threads=store.query_threads)
        dense = dict(store.dense(query_vector, depth))
        lex_top = lexical_hits()
        lexical = dict(lex_top)
        if self.fusion == "rrf":
            fused: dict[int, float] = {}
            for ranking in (list(dense), list(lexical)):
                for rank, i in enumerate(ranking):
                    fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
        else:
            self._fill_dense(dense, [i for i in lexical if i not in dense], query_vector)
            self._fill_lexical(lexical, toks, list(dense))
            fused = _convex(dense, lexical, lex_top)
        best = sorted(fused, key=lambda i: -fused[i])[: max(RESCORE, k)]
        # a hit from one ranking is scored by the other too, so every hit carries both signals
        self._fill_dense(dense, [i for i in best if i not in dense], query_vector)
        self._fill_lexical(lexical, toks, best)
        # second stage: a passage that holds one sentence matching the question closely beats one that
        # matches it loosely all over (the passage vector averages its sentences away)
        for i, sim in zip(best, self._best_sentence(best, query_vector), strict=True):
            fused[i] += SENTENCE_WEIGHT * sim
        best = self._distinct(sorted(best, key=lambda i: -fused[i]), k)
        return [Hit(i, fused[i], dense[i], lexical[i]) for i in best]

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
        out = []
        for vecs in self._stored.passage_sentences(ids):
            out.append(float((np.asarray(vecs, dtype=np.float32) @ query_vector).max()) if len(vecs) else 0.0)
        return out

    def _fill_dense(self, dense: dict[int, float], ids: list[int], query_vector: np.ndarray) -> None:
        if ids:
            vecs = self._stored.passage_vectors(ids)
            dense.update(zip(ids, (vecs @ query_vector).tolist(), strict=True))

    def _fill_lexical(self, lexical: dict[int, float], toks: list[str], ids: list[int]) -> None:
        missing = [i for i in ids if i not in lexical]
        if missing:
            lexical.update(zip(missing, self._stored.lexical_scores(toks, missing).tolist(), strict=True))

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


def _convex(dense: dict[int, float], lexical: dict[int, float], lex_top: list) -> dict[int, float]:
    """Convex fusion of each passage's cosine and its BM25 score normalised to the best one's."""
    top = lex_top[0][1] if lex_top else 1.0
    return {i: DENSE_WEIGHT * dense[i] + (1 - DENSE_WEIGHT) * lexical[i] / top for i in dense}


def _overlap(a: Passage, b: Passage) -> int:
    """Characters two passages share."""
    return max(0, min(a.end, b.end) - max(a.start, b.start)) if a.doc_id == b.doc_id else 0
