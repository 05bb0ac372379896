"""Stage 4: the index on disk - build it, update it incrementally, resume it, load it lazily.

Layout of an index directory (all transparent formats, no pickle)::

    CURRENT                    name of the generation in use (replaced atomically)
    LOCK                       held by the one build writing here (readers never wait for it)
    gen-<id>/manifest.json     format version, model, dimension, chunker settings, reading version,
                               vector index kind;
                               per document: sha256, size and mtime, title, date, pages, its chunk range
    gen-<id>/chunks.jsonl      one passage per line: document, title, date, span, page, text, sentences
    gen-<id>/chunks.offsets.npy   byte offset of each line, so one passage is read without the rest
    gen-<id>/chunks.faiss      passage vectors (row i = line i): exact IndexFlatIP, or IVF when large
    gen-<id>/sentences.npy     float16 sentence vectors, passage after passage
    gen-<id>/sentences.first.npy  row of each passage's first sentence in sentences.npy
    gen-<id>/bm25/             bm25s's own files for the passages' words (memory-mapped on load)
    build/                     batches finished by a build that has not completed yet

A build embeds new or changed documents in batches, each saved under ``build/`` as soon as it is done,
then writes a whole new generation beside the old one and swaps ``CURRENT`` with ``os.replace``. A build
killed at any point leaves the previous index usable, and the next build starts from the saved batches.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import mmap
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .chunking import Chunk, chunk_document
from .config import ChunkSettings
from .documents import READING_VERSION, SourceFile
from .embedding import DIMENSION, MODEL_NAME, encode_passages
from .errors import IndexMismatch, IndexNotFound
from .nlp import Sentence, terms
from .types import Document

log = logging.getLogger("rag")

FORMAT_VERSION = 3
PROGRESS_MIN_DOCS = 20
# Passages per saved batch: a killed build loses at most this much embedding work (~7 s here).
BATCH_CHUNKS = 256
# Past this many passages the vectors go into an inverted-file index (FAISS IndexIVFFlat) instead of an
# exact flat one. Measured here (python -m eval.bench --ann, MiniLM vectors): one exact query takes ~11 ms
# at 50,000 passages and ~25 ms at 100,000, while IVF with nprobe 32 takes under 0.5 ms at recall@10
# >= 0.99. HNSW lost to IVF on these vectors (recall@10 0.89 at efSearch 256 for 100,000).
IVF_FROM = 50_000
IVF_NPROBE = 32  # lists read per query


def ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: 4 sqrt(n) (FAISS guidance), at least 39 vectors to train each."""
    return max(1, min(int(4 * n**0.5), n // 39))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def expected_settings(chunk: ChunkSettings) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "model": MODEL_NAME,
        "dimension": DIMENSION,
        "chunker": asdict(chunk),
        "reading": READING_VERSION,
    }


# ----------------------------------------------------------------------------------------- loading


class ChunkTable(Sequence[Chunk]):
    """The passages of a generation, parsed one line at a time from a memory-mapped ``chunks.jsonl``:
    opening an index of any size reads no passage until a question needs it."""

    def __init__(self, path: Path, offsets: np.ndarray):
        self._offsets = offsets
        self._file = path.open("rb")
        size = os.fstat(self._file.fileno()).st_size
        self._data = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._parse = lru_cache(maxsize=16384)(self._parse_line)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"passage {i} out of range")
        return self._parse(i)

    def __iter__(self) -> Iterator[Chunk]:
        return (self[i] for i in range(len(self)))

    def raw(self, i: int) -> bytes:
        return bytes(self._data[int(self._offsets[i]) : int(self._offsets[i + 1])])

    def _parse_line(self, i: int) -> Chunk:
        return _chunk_from_record(json.loads(self.raw(i)))


@dataclass
class StoredIndex:
    """An index as loaded from disk. Nothing here is read in full: passages, sentence vectors and BM25
    postings are memory-mapped; only the passage vectors live in FAISS's memory."""

    path: Path
    manifest: dict
    chunks: ChunkTable
    vectors: object  # faiss.Index: IndexFlatIP, or IndexIVFFlat for large indexes
    sentence_vectors: np.ndarray  # float16, memory-mapped
    sentence_first: np.ndarray  # int64: sentence rows of passage i are first[i]:first[i + 1]
    bm25: object | None  # bm25s.BM25, None for an index without passages

    def sentence_rows(self, i: int) -> range:
        return range(int(self.sentence_first[i]), int(self.sentence_first[i + 1]))

    def document_chunks(self, doc_id: str) -> range:
        meta = self.manifest["documents"][doc_id]
        return range(meta["first"], meta["first"] + meta["chunks"])


def read_manifest(index_dir: Path) -> tuple[Path, dict]:
    index_dir = Path(index_dir)
    try:
        gen = index_dir / (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
        manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("documents"), dict):
            raise ValueError("manifest.json is not an index manifest")
    except (OSError, ValueError) as e:
        raise IndexNotFound(f"no index at {index_dir} - run: python -m index build") from e
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


def load(index_dir: Path, chunk: ChunkSettings) -> StoredIndex:
    import faiss

    gen, manifest = read_manifest(index_dir)
    check_compatible(manifest, chunk, index_dir)
    try:
        offsets = np.load(gen / "chunks.offsets.npy", mmap_mode="r", allow_pickle=False)
        chunks = ChunkTable(gen / "chunks.jsonl", offsets)
        vectors = faiss.read_index(str(gen / "chunks.faiss"))
        if manifest.get("vector_index", {}).get("kind") == "ivf":
            vectors.nprobe = int(manifest["vector_index"]["nprobe"])
            vectors.make_direct_map()  # passages are looked up by row too (reconstruct)
        sentence_vectors = np.load(gen / "sentences.npy", mmap_mode="r", allow_pickle=False)
        sentence_first = np.load(gen / "sentences.first.npy", allow_pickle=False)
        bm25 = _load_bm25(gen / "bm25") if len(chunks) else None
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise IndexNotFound(f"the index at {index_dir} is damaged ({e}) - run: python -m index build") from e
    if (
        int(offsets[-1]) != (gen / "chunks.jsonl").stat().st_size
        or vectors.ntotal != len(chunks)
        or vectors.d != DIMENSION
        or len(sentence_first) != len(chunks) + 1
        or int(sentence_first[-1]) != len(sentence_vectors)
    ):
        raise IndexNotFound(f"the index at {index_dir} is inconsistent - run: python -m index build")
    return StoredIndex(gen, manifest, chunks, vectors, sentence_vectors, sentence_first, bm25)


def _load_bm25(path: Path):
    import bm25s

    # bm25s sets its own logger to DEBUG at import; its chatter is not ours to show
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s.BM25.load(str(path), mmap=True, load_corpus=False)


# ---------------------------------------------------------------------------------------- building


@dataclass
class _Done:
    """One document's finished work: its chunk records and vectors."""

    meta: dict  # title, date, pages
    records: list[bytes]  # chunks.jsonl lines
    vectors: np.ndarray  # passages x DIMENSION
    sentences: np.ndarray  # sentences x DIMENSION (float16)
    counts: list[int]  # sentences per passage


def sync(
    items: Sequence[Document | SourceFile],
    index_dir: Path,
    chunk: ChunkSettings,
    *,
    progress: bool = True,
    read=None,
) -> StoredIndex:
    """Make the index at ``index_dir`` match ``items``, embedding only new or changed documents.

    ``items`` are documents, or files (read with ``read(file) -> Document | None``, only when their size,
    mtime and then content hash say they changed). Resumes the batches a killed build left behind.
    """
    index_dir = Path(index_dir)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("document ids must be unique")
    index_dir.mkdir(parents=True, exist_ok=True)
    with _lock(index_dir):
        old: StoredIndex | None = None
        try:
            old = load(index_dir, chunk)
        except IndexMismatch as e:
            log.warning("%s; rebuilding it from scratch", str(e).split(" - ")[0])
        except IndexNotFound:
            pass
        have = old.manifest["documents"] if old else {}
        plan = _plan(items, have)
        if old is not None and set(ids) == set(have) and all(p.same for p in plan):
            if any(p.stamp != {k: have[p.id].get(k) for k in ("size", "mtime_ns")} for p in plan if p.stamp):
                _restamp(old, plan)  # touched but unchanged files: remember their new mtime
            return old
        work = _Work(index_dir, chunk)
        todo = [(item, p.sha) for item, p in zip(items, plan, strict=True) if not p.same]
        todo = [(item, sha) for item, sha in todo if (item.id, sha) not in work.done]
        log.info(
            "indexing %d documents: %d unchanged, %d resumed from an interrupted build, %d to embed, "
            "%d removed",
            len(items),
            sum(p.same for p in plan),
            sum(1 for p in plan if not p.same and (p.id, p.sha) in work.done),
            len(todo),
            len(set(have) - set(ids)),
        )
        shas = work.run(todo, read, progress=progress)
        plan = [p._replace(sha=shas.get(p.id, p.sha)) for p in plan]
        _assemble(index_dir, chunk, plan, old, work, progress=progress)
        work.clear()
        return load(index_dir, chunk)


class _Planned(NamedTuple):
    """What a build does with one item."""

    id: str
    sha: str | None  # content sha256; None when the file could not be read
    same: bool  # unchanged since the index in use: copied, not embedded
    stamp: dict | None  # a file's size and mtime, None for a document given in memory


def _plan(items, have: dict) -> list[_Planned]:
    out: list[_Planned] = []
    for item in items:
        meta = have.get(item.id)
        if isinstance(item, Document):
            sha = sha256(item.text)
            out.append(_Planned(item.id, sha, bool(meta) and meta["sha256"] == sha, None))
            continue
        stamp = {"size": item.size, "mtime_ns": item.mtime_ns}
        if meta and meta.get("size") == item.size and meta.get("mtime_ns") == item.mtime_ns:
            out.append(_Planned(item.id, meta["sha256"], True, stamp))
            continue
        try:
            sha = hashlib.sha256(item.path.read_bytes()).hexdigest()
        except OSError:
            sha = None  # reported by the reader, which is what skips it
        out.append(_Planned(item.id, sha, bool(meta) and meta["sha256"] == sha, stamp))
    return out


class _Work:
    """The ``build/`` folder: batches of finished documents, saved as they complete."""

    def __init__(self, index_dir: Path, chunk: ChunkSettings):
        self.chunk = chunk
        self.dir = index_dir / "build"
        settings = expected_settings(chunk)
        marker = self.dir / "settings.json"
        try:
            if json.loads(marker.read_text(encoding="utf-8")) != settings:
                shutil.rmtree(self.dir)
        except (OSError, ValueError):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(settings), encoding="utf-8")
        self.done: dict[tuple[str, str], _Done] = {}  # by (document id, content sha256)
        for meta_path in sorted(self.dir.glob("batch-*.json")):
            try:
                self._read_batch(meta_path)
            except (OSError, ValueError, KeyError) as e:
                log.warning("ignored a damaged batch of an earlier build (%s): %s", meta_path.name, e)

    def run(self, todo: list[tuple], read, *, progress: bool) -> dict[str, str]:
        """Read, chunk and embed ``todo`` in batches; returns the content hash of each file read."""
        from tqdm import tqdm

        shas: dict[str, str] = {}
        pending: list[tuple[str, Document, list[Chunk]]] = []
        size = 0
        bar = tqdm(
            total=len(todo),
            desc="indexing",
            unit="doc",
            disable=not progress or len(todo) < PROGRESS_MIN_DOCS,
            smoothing=0.05,
        )
        with bar:
            for item, sha in todo:
                doc = item if isinstance(item, Document) else read(item)
                if doc is None:
                    bar.update()
                    continue
                sha = sha or sha256(doc.text)
                shas[doc.id] = sha
                chunks = chunk_document(doc, self.chunk)
                pending.append((sha, doc, chunks))
                size += len(chunks)
                if size >= BATCH_CHUNKS:
                    self._embed(pending)
                    bar.update(len(pending))
                    pending, size = [], 0
            if pending:
                self._embed(pending)
                bar.update(len(pending))
        return shas

    def _embed(self, batch: list[tuple[str, Document, list[Chunk]]]) -> None:
        chunks = [c for _, _, cs in batch for c in cs]
        vectors, sentences = encode_passages(
            [c.embedding_text for c in chunks], [c.sentence_spans for c in chunks]
        )
        sentences = sentences.astype(np.float16)
        name = f"batch-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        np.save(self.dir / f"{name}.vectors.npy", vectors, allow_pickle=False)
        np.save(self.dir / f"{name}.sentences.npy", sentences, allow_pickle=False)
        docs, c0, s0 = [], 0, 0
        for sha, doc, cs in batch:
            counts = [len(c.sentences) for c in cs]
            meta, records = _doc_meta(doc), [_record(c) for c in cs]
            docs.append({"id": doc.id, "sha256": sha, "meta": meta, "records": [r.decode() for r in records]})
            self.done[doc.id, sha] = _Done(
                meta, records, vectors[c0 : c0 + len(cs)], sentences[s0 : s0 + sum(counts)], counts
            )
            c0, s0 = c0 + len(cs), s0 + sum(counts)
        # the batch's description goes last, atomically: a batch without one never counts
        tmp = self.dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps({"documents": docs}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.dir / f"{name}.json")

    def _read_batch(self, meta_path: Path) -> None:
        name = meta_path.name.removesuffix(".json")
        batch = json.loads(meta_path.read_text(encoding="utf-8"))
        vectors = np.load(self.dir / f"{name}.vectors.npy", allow_pickle=False)
        sentences = np.load(self.dir / f"{name}.sentences.npy", allow_pickle=False)
        c0 = s0 = 0
        for d in batch["documents"]:
            records = [r.encode("utf-8") for r in d["records"]]
            counts = [len(json.loads(r)["sentences"]) for r in records]
            self.done[d["id"], d["sha256"]] = _Done(
                d["meta"],
                records,
                vectors[c0 : c0 + len(records)],
                sentences[s0 : s0 + sum(counts)],
                counts,
            )
            c0, s0 = c0 + len(records), s0 + sum(counts)
        if c0 != len(vectors) or s0 != len(sentences):
            raise ValueError("the batch's vectors do not match its passages")

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _doc_meta(doc: Document) -> dict:
    return {"title": doc.title, "date": doc.date, "pages": list(getattr(doc, "pages", ()) or ())}


def _record(c: Chunk) -> bytes:
    rec = {
        "doc": c.doc_id,
        "title": c.title,
        "date": c.date,
        "start": c.start,
        "end": c.end,
        "text": c.text,
        "sentences": [[s.start, s.end] for s in c.sentences],
    }
    return (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")


def _chunk_from_record(r: dict) -> Chunk:
    sents = tuple(Sentence(s, e) for s, e in r["sentences"])
    return Chunk(r["doc"], r["title"], r["date"], r["start"], r["end"], r["text"], sents)


def _assemble(
    index_dir: Path,
    chunk: ChunkSettings,
    plan: list[_Planned],
    old: StoredIndex | None,
    work: _Work,
    *,
    progress: bool,
) -> None:
    """Write the new generation: unchanged documents copied from ``old``, the rest from ``work``."""
    import faiss
    from tqdm import tqdm

    name = f"gen-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = index_dir / f".{name}.tmp"
    tmp.mkdir()
    try:
        documents: dict[str, dict] = {}
        offsets, first = [0], [0]
        vectors: list[np.ndarray] = []
        sentences: list[np.ndarray] = []
        tokens: list[list[str]] = []
        n = 0
        bar = tqdm(plan, desc="writing", unit="doc", disable=not progress or len(plan) < 5000)
        with (tmp / "chunks.jsonl").open("wb") as out:
            for doc_id, sha, same, stamp in bar:
                if same:
                    meta = old.manifest["documents"][doc_id]
                    rows = old.document_chunks(doc_id)
                    records = [old.chunks.raw(i) for i in rows]
                    if len(rows):
                        vectors.append(old.vectors.reconstruct_n(rows.start, len(rows)))
                        a, b = old.sentence_first[rows.start], old.sentence_first[rows.stop]
                        sentences.append(np.asarray(old.sentence_vectors[a:b]))
                    counts = [len(old.sentence_rows(i)) for i in rows]
                    info = {k: meta.get(k) for k in ("title", "date", "pages")}
                elif (doc_id, sha) in work.done:
                    done = work.done[doc_id, sha]
                    records, counts, info = done.records, done.counts, done.meta
                    vectors.append(done.vectors)
                    sentences.append(done.sentences)
                else:
                    continue  # unreadable: the reader said why
                for rec, count in zip(records, counts, strict=True):
                    out.write(rec)
                    offsets.append(offsets[-1] + len(rec))
                    first.append(first[-1] + count)
                    tokens.append(terms(_chunk_from_record(json.loads(rec)).embedding_text))
                documents[doc_id] = {
                    "sha256": sha,
                    **(stamp or {}),
                    **info,
                    "first": n,
                    "chunks": len(records),
                }
                n += len(records)
        np.save(tmp / "chunks.offsets.npy", np.asarray(offsets, dtype=np.int64), allow_pickle=False)
        np.save(tmp / "sentences.first.npy", np.asarray(first, dtype=np.int64), allow_pickle=False)
        sent = np.concatenate(sentences) if sentences else np.zeros((0, DIMENSION), np.float16)
        np.save(tmp / "sentences.npy", sent.astype(np.float16, copy=False), allow_pickle=False)
        del sentences, sent
        vecs = np.ascontiguousarray(np.concatenate(vectors), dtype=np.float32) if vectors else None
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # building uses every core (searching uses one)
        if n >= IVF_FROM:
            lists = ivf_lists(n)
            log.info("clustering %d passages into %d lists for approximate search", n, lists)
            quantizer = faiss.IndexFlatIP(DIMENSION)  # kept referenced while the IVF index uses it
            index = faiss.IndexIVFFlat(quantizer, DIMENSION, lists, faiss.METRIC_INNER_PRODUCT)
            index.train(vecs)
            vector_index = {"kind": "ivf", "lists": lists, "nprobe": min(IVF_NPROBE, lists)}
        else:
            index = faiss.IndexFlatIP(DIMENSION)
            vector_index = {"kind": "flat"}
        if vecs is not None:
            index.add(vecs)
        faiss.write_index(index, str(tmp / "chunks.faiss"))
        if tokens:
            _save_bm25(tokens, tmp / "bm25")
        manifest = {
            **expected_settings(chunk),
            "vector_index": vector_index,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "num_documents": len(documents),
            "num_chunks": n,
            "num_sentences": int(first[-1]),
            "documents": documents,
        }
        # the manifest goes last: a generation with a manifest is complete
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, index_dir / name)
        _point(index_dir, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for stale in index_dir.glob("gen-*"):
        if stale.name != name:
            shutil.rmtree(stale, ignore_errors=True)
    for stale in index_dir.glob(".gen-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def _save_bm25(tokens: list[list[str]], path: Path) -> None:
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    bm25 = bm25s.BM25()
    bm25.index(tokens, show_progress=False)
    bm25.save(str(path))


def _point(index_dir: Path, name: str) -> None:
    pointer = index_dir / f".CURRENT.{os.getpid()}"
    pointer.write_text(name + "\n", encoding="utf-8")
    os.replace(pointer, index_dir / "CURRENT")


def _restamp(old: StoredIndex, plan: list[_Planned]) -> None:
    """Record new sizes/mtimes of unchanged files, so the next start does not hash them again."""
    for doc_id, _, _, stamp in plan:
        if stamp:
            old.manifest["documents"][doc_id].update(stamp)
    tmp = old.path / ".manifest.json.tmp"
    tmp.write_text(json.dumps(old.manifest, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, old.path / "manifest.json")


@contextlib.contextmanager
def _lock(index_dir: Path):
    """One build at a time per index directory; a second one waits, then finds the work done."""
    with (index_dir / "LOCK").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another build is writing %s; waiting for it to finish", index_dir)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
