"""Stage 4: the index on disk - its layout, and loading it lazily (:mod:`rag.build` writes it).

Layout of an index directory (all transparent formats, no pickle)::

    RAG-INDEX                  marks the folder as an index: no build writes into a folder without
                               it, unless the folder is new or empty
    CURRENT                    name of the generation in use (replaced atomically)
    LOCK                       held by the one build writing here (readers never take it nor wait)
    gen-<id>/manifest.json     format version, model, dimension, chunker settings, reading and
                               terms versions, vector index kind, the size and sha256 of every
                               other file of the generation (checked on load);
                               per document: sha256, size and mtime, title, date, pages, its chunk range;
                               per file skipped as unreadable: size, mtime and why (not read again
                               until it changes)
    gen-<id>/chunks.jsonl      one passage per line: document, title, date, span, page, text, sentences
    gen-<id>/chunks.offsets.npy   byte offset of each line, so one passage is read without the rest
    gen-<id>/chunks.faiss      passage vectors (row i = line i): exact IndexFlatIP, or IVF when large
    gen-<id>/sentences.npy     float16 sentence vectors, passage after passage
    gen-<id>/sentences.first.npy  row of each passage's first sentence in sentences.npy
    gen-<id>/bm25/             bm25s's own files for the passages' words (memory-mapped on load)
    build/                     batches finished by a build that has not completed yet

Loading checks the manifest's settings and every file's checksum, then memory-maps what it can.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from .chunking import Passage
from .config import ChunkSettings
from .documents import READING_VERSION
from .embedding import DIMENSION, MODEL_NAME, QUERY_THREADS
from .errors import (
    IndexDamaged,
    IndexMismatch,
    IndexNotFound,
)
from .multilingual import Match
from .nlp import TERMS_VERSION, Sentence

log = logging.getLogger("rag")


FORMAT_VERSION = 4  # 4: checksums of the generation's files, and the files skipped as unreadable


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def expected_settings(chunk: ChunkSettings) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "model": MODEL_NAME,
        "dimension": DIMENSION,
        "chunker": asdict(chunk),
        "reading": READING_VERSION,
        "terms": TERMS_VERSION,
    }


class PassageRecords(Sequence[Passage]):
    """Passages by row, each parsed from its JSON Lines record (``raw(i)``) when asked for."""

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"passage {i} out of range")
        return self._passage(i)

    def __iter__(self) -> Iterator[Passage]:
        return (self[i] for i in range(len(self)))

    def _passage(self, i: int) -> Passage:
        return passage_from_record(json.loads(self.raw(i)))  # raw(i): each subclass's record


class PassageTable(PassageRecords):
    """The passages of a generation, parsed one line at a time from a memory-mapped ``chunks.jsonl``:
    opening an index of any size reads no passage until a question needs it."""

    def __init__(self, path: Path, offsets: np.ndarray):
        self._offsets = offsets
        self._file = path.open("rb")
        size = os.fstat(self._file.fileno()).st_size
        self._data = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._passage = lru_cache(maxsize=16384)(super()._passage)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def raw(self, i: int) -> bytes:
        return bytes(self._data[int(self._offsets[i]) : int(self._offsets[i + 1])])


@dataclass(frozen=True)
class DocumentInfo:
    """What an index records of one document it holds."""

    id: str
    title: str
    date: str | None
    pages: tuple[int, ...]  # where each page starts in its text (paged formats)
    passages: range  # its passages' rows
    sha256: str  # of its text


class Documents(Mapping[str, DocumentInfo]):
    """The documents an index holds, by id: each record made from the manifest when it is asked for, so
    opening an index of many documents costs nothing here."""

    def __init__(self, records: dict[str, dict]):
        self._records = records

    def __getitem__(self, doc_id: str) -> DocumentInfo:
        meta = self._records[doc_id]
        first = meta["first"]
        pages = tuple(meta.get("pages") or ())
        return DocumentInfo(
            doc_id,
            meta["title"],
            meta.get("date"),
            pages,
            range(first, first + meta["chunks"]),
            meta["sha256"],
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


@dataclass(frozen=True)
class StoredIndex:
    """An index as loaded from disk. Nothing here is read in full: passages, sentence vectors and BM25
    postings are memory-mapped; only the passage vectors live in FAISS's memory."""

    path: Path
    manifest: dict
    passages: PassageTable
    vectors: object  # faiss.Index: IndexFlatIP, or IndexIVFFlat for large indexes
    sentence_vectors: np.ndarray  # float16, memory-mapped
    sentence_first: np.ndarray  # int64: sentence rows of passage i are first[i]:first[i + 1]
    bm25: object | None  # bm25s.BM25, None for an index without passages
    multilingual: np.ndarray | None = None  # passages x 512 float16, memory-mapped; None when not built
    words: tuple[str, ...] | None = None  # the passages' English words (with multilingual vectors)
    word_vectors: np.ndarray | None = None  # words x 512 float16, memory-mapped

    _cache: dict = field(default_factory=dict, repr=False, compare=False)  # float32 copies, last BM25 query
    # below: what rag.backend.Store asks of an index
    query_threads: ClassVar[int] = QUERY_THREADS  # FAISS and bm25s search here, after the embedding

    @property
    def location(self) -> str:
        return str(self.path.parent)

    @property
    def has_multilingual(self) -> bool:
        return self.multilingual is not None

    def sentence_rows(self, i: int) -> range:
        return range(int(self.sentence_first[i]), int(self.sentence_first[i + 1]))

    def document_passages(self, doc_id: str) -> range:
        return self.documents[doc_id].passages

    def dense(self, query: np.ndarray, depth: int) -> list[tuple[int, float]]:
        scores, ids = self.vectors.search(query.reshape(1, -1).astype(np.float32, copy=False), depth)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def passage_vectors(self, rows: Sequence[int]) -> np.ndarray:
        if not len(rows):
            return np.zeros((0, DIMENSION), np.float32)
        return np.vstack([self.vectors.reconstruct(int(i)) for i in rows])

    def lexical(self, terms: list[str], depth: int) -> list[tuple[int, float]]:
        scores = self._bm25_scores(terms)
        if scores is None:
            return []
        part = np.argpartition(-scores, depth)[:depth] if depth < len(scores) else np.arange(len(scores))
        part = part[np.argsort(-scores[part], kind="stable")]
        return [(int(i), float(scores[i])) for i in part if scores[i] > 0]

    def newer(self) -> None:  # a folder index is brought up to date by rag.build.sync, in this process
        return None

    def prefetch(self, rows: Sequence[int], *, multilingual: bool) -> None:  # memory-mapped: nothing to do
        pass

    def lexical_later(self, terms: list[str], depth: int):
        return lambda: self.lexical(terms, depth)  # in this process: nothing to overlap

    def lexical_scores(self, terms: list[str], rows: Sequence[int]) -> np.ndarray:
        scores = self._bm25_scores(terms)
        return np.zeros(len(rows)) if scores is None else scores[np.asarray(rows, dtype=np.int64)]

    def _bm25_scores(self, terms: list[str]) -> np.ndarray | None:
        """Every passage's BM25 score; the last query's are kept, as a search asks twice."""
        known = tuple(t for t in terms if self.bm25 is not None and t in self.bm25.vocab_dict)
        if not known:
            return None
        last = self._cache.get("bm25")
        if last is not None and last[0] == known:
            return last[1]
        scores = self.bm25.get_scores(list(known))
        self._cache["bm25"] = (known, scores)
        return scores

    def known_terms(self, terms: Iterable[str]) -> set[str]:
        return {t for t in terms if self.document_frequency(t) > 0}

    def document_frequency(self, term: str) -> int:
        col = self.bm25.vocab_dict.get(term) if self.bm25 is not None else None
        if col is None:
            return 0
        indptr = self.bm25.scores["indptr"]
        return int(indptr[col + 1] - indptr[col])

    def passage_sentences(self, rows: Sequence[int]) -> list[np.ndarray]:
        first = self.sentence_first
        return [np.asarray(self.sentence_vectors[first[i] : first[i + 1]]) for i in rows]

    def _float32(self, name: str) -> np.ndarray:
        # read once, on the first question in another language
        if name not in self._cache:
            self._cache[name] = np.asarray(getattr(self, name), dtype=np.float32)
        return self._cache[name]

    def multilingual_dense(self, queries: np.ndarray, depth: int) -> list[tuple[int, float]]:
        if self.multilingual is None or not len(self.multilingual):
            return []
        best = (self._float32("multilingual") @ queries.T).max(axis=1)
        depth = min(depth, len(best))
        part = np.argpartition(-best, depth - 1)[:depth]
        part = part[np.argsort(-best[part], kind="stable")]
        return [(int(i), float(best[i])) for i in part]

    def multilingual_vectors(self, rows: Sequence[int]) -> np.ndarray:
        return self._float32("multilingual")[np.asarray(rows, dtype=np.int64)]

    def word_matches(self, pieces: np.ndarray) -> list[Match]:
        from .multilingual import nearest

        if self.words is None:
            return [None] * len(pieces)
        return nearest(pieces, self.words, self._float32("word_vectors"))

    def known_word_vectors(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        if self.words is None:
            return {}
        if "word_rows" not in self._cache:
            self._cache["word_rows"] = {w: i for i, w in enumerate(self.words)}
        rows = self._cache["word_rows"]
        return {w: np.asarray(self.word_vectors[rows[w]]) for w in words if w in rows}

    @property
    def documents(self) -> Documents:
        """The documents the index holds, by id, as its manifest records them."""
        return Documents(self.manifest["documents"])


def read_manifest(index_dir: Path) -> tuple[Path, dict]:
    index_dir = Path(index_dir)
    try:
        name = (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as e:
        raise IndexNotFound(f"no index at {index_dir} - run: python -m index build") from e
    try:
        if not GENERATION.fullmatch(name):
            raise ValueError(f"CURRENT names {name[:40]!r}, not a generation")
        gen = index_dir / name
        manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("documents"), dict):
            raise ValueError("manifest.json is not an index manifest")
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)[:120]
        raise IndexDamaged(
            f"the index at {index_dir} is damaged: its manifest cannot be read ({reason}) - "
            "run: python -m index build"
        ) from e
    return gen, manifest


def check_compatible(manifest: dict, chunk: ChunkSettings, index_dir: Path) -> None:
    want = expected_settings(chunk)
    got = {key: manifest.get(key) for key in want}
    if got != want:
        diff = ", ".join(
            f"{k}: index has {got[k]!r}, expected {want[k]!r}" for k in want if got[k] != want[k]
        )
        raise IndexMismatch(
            f"the index at {index_dir} was built with other settings ({diff}) - "
            "rebuild it: python -m index build"
        )


def load(index_dir: Path, chunk: ChunkSettings, *, verify: bool = True) -> StoredIndex:
    """The index in use at ``index_dir``; with ``verify``, each file checked against its checksum."""
    import faiss

    # One question at a time: a single thread. With two, OpenMP's hand-off costs more than it saves (one
    # exact query over 100,000 vectors: 18 ms on one thread, 70 ms on two, on this 2-core CPU).
    faiss.omp_set_num_threads(1)
    gen, manifest = read_manifest(index_dir)
    check_compatible(manifest, chunk, index_dir)
    if verify:
        _verify(gen, manifest.get("files") or {}, index_dir)
    try:
        offsets = np.load(gen / "chunks.offsets.npy", mmap_mode="r", allow_pickle=False)
        chunks = PassageTable(gen / "chunks.jsonl", offsets)
        vectors = faiss.read_index(str(gen / "chunks.faiss"))
        if manifest.get("vector_index", {}).get("kind") == "ivf":
            vectors.nprobe = int(manifest["vector_index"]["nprobe"])
            vectors.make_direct_map()  # passages are looked up by row too (reconstruct)
        sentence_vectors = np.load(gen / "sentences.npy", mmap_mode="r", allow_pickle=False)
        sentence_first = np.load(gen / "sentences.first.npy", allow_pickle=False)
        bm25 = _load_bm25(gen / "bm25") if len(chunks) else None
        other = _load_multilingual(gen, manifest, index_dir)
        words, word_vectors = None, None
        if other is not None:
            words = tuple(json.loads((gen / "multilingual.words.json").read_text(encoding="utf-8")))
            word_vectors = np.load(gen / "multilingual.words.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise IndexDamaged(f"the index at {index_dir} is damaged ({e}) - run: python -m index build") from e
    if (
        int(offsets[-1]) != (gen / "chunks.jsonl").stat().st_size
        or vectors.ntotal != len(chunks)
        or vectors.d != DIMENSION
        or len(sentence_first) != len(chunks) + 1
        or int(sentence_first[-1]) != len(sentence_vectors)
        or (other is not None and len(other) != len(chunks))
        or (words is not None and len(words) != len(word_vectors))
    ):
        raise IndexDamaged(f"the index at {index_dir} is inconsistent - run: python -m index build")
    return StoredIndex(
        gen, manifest, chunks, vectors, sentence_vectors, sentence_first, bm25, other, words, word_vectors
    )


def _load_multilingual(gen: Path, manifest: dict, index_dir: Path) -> np.ndarray | None:
    """The multilingual passage vectors, when the index was built with them by the encoder installed."""
    from .multilingual import model_name

    record = manifest.get("multilingual")
    if not record:
        return None
    if record.get("model") != model_name():
        raise IndexMismatch(
            f"the index at {index_dir} was built with other settings (multilingual model: index has "
            f"{record.get('model')!r}, expected {model_name()!r}) - rebuild it: python -m index build"
        )
    return np.load(gen / "multilingual.npy", mmap_mode="r", allow_pickle=False)


def _load_bm25(path: Path):
    import bm25s

    # bm25s sets its own logger to DEBUG at import; its chatter is not ours to show
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s.BM25.load(str(path), mmap=True, load_corpus=False)


def passage_from_record(r: dict) -> Passage:
    sents = tuple(Sentence(s, e) for s, e in r["sentences"])
    return Passage(r["doc"], r["title"], r["date"], r["start"], r["end"], r["text"], sents)


def _verify(gen: Path, files: dict, index_dir: Path) -> None:
    """Check each file of a generation against its recorded size and sha256 (about 1 GB/s here)."""
    for rel, want in files.items():
        try:
            size = (gen / rel).stat().st_size
            if size != want["size"]:
                problem = f"{size:,} bytes instead of {want['size']:,}"
            else:
                with (gen / rel).open("rb") as f:
                    same = hashlib.file_digest(f, "sha256").hexdigest() == want["sha256"]
                problem = "" if same else "its content changed"
        except OSError as e:
            problem = e.strerror or str(e)
        if problem:
            raise IndexDamaged(
                f"the index at {index_dir} is damaged: {rel} ({problem}) - run: python -m index build"
            )


GENERATION = re.compile(r"\.?gen-\d{14}-\d+-[0-9a-f]{8}(?:\.tmp)?")
