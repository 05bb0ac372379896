"""Stage 4: the index on disk - build it, update it incrementally, resume it, load it lazily.

Layout of an index directory (all transparent formats, no pickle)::

    RAG-INDEX                  marks the folder as an index: no build writes into a folder without
                               it, unless the folder is new or empty
    CURRENT                    name of the generation in use (replaced atomically)
    LOCK                       held by the one build writing here (readers never take it nor wait)
    gen-<id>/manifest.json     format version, model, dimension, chunker settings, reading version,
                               vector index kind, the size and sha256 of every other file of the
                               generation (checked on load);
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

A build embeds new or changed documents in batches, each saved under ``build/`` as soon as it is done,
then writes a whole new generation beside the old one and swaps ``CURRENT`` with ``os.replace``. A build
killed at any point leaves the previous index usable, and the next build starts from the saved batches.
A build deletes only what builds write: generations named ``gen-<id>`` and the batches in ``build/``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import re
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
from .config import INDEX_MARK, SESSIONS, UPLOADS, ChunkSettings
from .documents import READING_VERSION, SourceFile
from .embedding import DIMENSION, MODEL_NAME, encode_passages
from .errors import (
    DocumentUnreadable,
    IndexDamaged,
    IndexMismatch,
    IndexNotFound,
    IndexUpdateFailed,
    NotAnIndex,
)
from .nlp import Sentence, terms
from .types import Document

log = logging.getLogger("rag")

FORMAT_VERSION = 4  # 4: checksums of the generation's files, and the files skipped as unreadable
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
        name = (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as e:
        raise IndexNotFound(f"no index at {index_dir} - run: python -m index build") from e
    try:
        if not _GENERATION.fullmatch(name):
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

    gen, manifest = read_manifest(index_dir)
    check_compatible(manifest, chunk, index_dir)
    if verify:
        _verify(gen, manifest.get("files") or {}, index_dir)
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
        raise IndexDamaged(f"the index at {index_dir} is damaged ({e}) - run: python -m index build") from e
    if (
        int(offsets[-1]) != (gen / "chunks.jsonl").stat().st_size
        or vectors.ntotal != len(chunks)
        or vectors.d != DIMENSION
        or len(sentence_first) != len(chunks) + 1
        or int(sentence_first[-1]) != len(sentence_vectors)
    ):
        raise IndexDamaged(f"the index at {index_dir} is inconsistent - run: python -m index build")
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
    base: StoredIndex | None = None,
    strict: bool = True,
) -> StoredIndex:
    """Make the index at ``index_dir`` match ``items``, embedding only new or changed documents.

    ``items`` are documents, or files (read with ``read(file) -> Document``, which raises
    :class:`DocumentUnreadable` for a file it cannot read, only when their size, mtime and then content
    hash say they changed). A file that cannot be read is skipped with a warning, once: the manifest
    remembers it until it changes. Resumes the batches a killed build left behind. Documents that
    ``base`` (another index) holds unchanged are copied from it when this directory has no index yet.

    A current index is only read, so a read-only one opens. An update needs the directory's lock: with
    ``strict`` a build waits for another one and raises :class:`IndexUpdateFailed` when it cannot write;
    without it, when an index is in use, a busy lock or a failed write leaves that index answering,
    with a warning.
    """
    index_dir = Path(index_dir)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("document ids must be unique")
    old = _try_load(index_dir, chunk)
    plan = _plan(items, old) if old is not None else None
    if old is not None and _current(old, plan):
        return old
    try:
        _claim(index_dir)
        with _lock(index_dir, wait=strict or old is None):
            if _generation(index_dir) != (old.path.name if old is not None else None):
                # another build finished while this one waited: plan against what it wrote
                old = _try_load(index_dir, chunk, quiet=True)
                plan = _plan(items, old) if old is not None else None
                if old is not None and _current(old, plan):
                    return old
            return _update(items, index_dir, chunk, old, plan, base, read=read, progress=progress)
    except _Busy:
        log.warning("another build is updating %s; answering from the index in use meanwhile", index_dir)
        return old
    except OSError as e:
        problem = _write_problem(index_dir, e)
        if strict or old is None:
            raise IndexUpdateFailed(f"{problem} - the index in use, if any, is unchanged") from e
        log.warning("%s; answering from the index in use, which misses the latest changes", problem)
        return old


def _generation(index_dir: Path) -> str | None:
    """The name of the generation in use, as ``CURRENT`` says now; None when there is none."""
    try:
        return (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None


def _try_load(index_dir: Path, chunk: ChunkSettings, *, quiet: bool = False) -> StoredIndex | None:
    """The index in use, or None when there is none or it must be rebuilt (saying why)."""
    try:
        return load(index_dir, chunk)
    except (IndexMismatch, IndexDamaged) as e:
        if not quiet:
            log.warning("%s; rebuilding it from the documents", str(e).split(" - ")[0])
    except IndexNotFound:
        pass
    return None


def _current(old: StoredIndex, plan: list[_Planned]) -> bool:
    """Whether ``old`` holds exactly the planned items, unchanged, and knows the ones it skipped as
    unreadable. Touched but unchanged files get their new size and mtime recorded (when the index is
    writable), so the next start does not hash them again."""
    have = old.manifest["documents"]
    if any(not (p.same or p.known_bad) for p in plan) or len(have) != sum(p.same for p in plan):
        return False
    if any(p.stamp and p.stamp != {k: have[p.id].get(k) for k in STAMP} for p in plan if p.same):
        _restamp(old, plan)
    return True


def _update(
    items, index_dir: Path, chunk: ChunkSettings, old, plan, base, *, read, progress: bool
) -> StoredIndex:
    """Embed what changed and write a new generation; under the directory's lock. ``plan`` is
    :func:`_plan` against ``old``; without an old index, documents are planned against ``base``."""
    copy_from = old if old is not None else base
    if old is None:
        plan = _plan(items, base)
    have = copy_from.manifest["documents"] if copy_from is not None else {}
    skipped = copy_from.manifest.get("skipped", {}) if copy_from is not None else {}
    work = _Work(index_dir, chunk)
    todo = [(item, p.sha) for item, p in zip(items, plan, strict=True) if not (p.same or p.known_bad)]
    todo = [(item, sha) for item, sha in todo if (item.id, sha) not in work.done]
    log.info(
        "indexing %d documents: %d unchanged, %d resumed from an interrupted build, %d to embed, %d removed",
        len(items),
        sum(p.same for p in plan),
        sum(1 for p in plan if not p.same and (p.id, p.sha) in work.done),
        len(todo),
        len(set(have) - set(p.id for p in plan)) if old is not None else 0,
    )
    try:
        shas, bad = work.run(todo, read, progress=progress)
        plan = [p._replace(sha=shas.get(p.id, p.sha)) for p in plan]
        skipped = {p.id: skipped[p.id] for p in plan if p.known_bad} | bad
        nothing_new = all(p.same or p.known_bad or p.id in bad for p in plan)
        if old is not None and nothing_new and len(have) == sum(p.same for p in plan):
            _restamp(old, plan, skipped=skipped)  # only newly unreadable files: nothing to re-write
            work.clear()
            return old
        _assemble(index_dir, chunk, plan, copy_from, work, skipped=skipped, progress=progress)
    except OSError as e:
        if _disk_full(e):
            work.clear()  # its batches would keep the disk full; the next build starts over
        raise
    work.clear()
    return load(index_dir, chunk, verify=False)


def _disk_full(e: OSError) -> bool:
    # numpy reports a short write as "N requested and M written", without an errno
    return e.errno in (errno.ENOSPC, errno.EDQUOT) or bool(re.search(r"requested and \d+ written", str(e)))


def _write_problem(index_dir: Path, e: OSError) -> str:
    if _disk_full(e):
        return (
            f"cannot write the index at {index_dir}: the disk is full (no space left on device); "
            "free some space and build again"
        )
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write the index at {index_dir}: {e.strerror or e} (the folder is read-only for us)"
    return f"cannot write the index at {index_dir}: {e.strerror or e}"


STAMP = ("size", "mtime_ns")


class _Planned(NamedTuple):
    """What a build does with one item."""

    id: str
    sha: str | None  # content sha256; None when the file could not be read
    same: bool  # unchanged since the index copied from: copied, not embedded
    stamp: dict | None  # a file's size and mtime, None for a document given in memory
    known_bad: bool = False  # skipped as unreadable before, and unchanged since: not read again


def _plan(items, index: StoredIndex | None) -> list[_Planned]:
    """What to do with each item, given the index it would be copied from (None: embed everything)."""
    have = index.manifest["documents"] if index is not None else {}
    skipped = index.manifest.get("skipped", {}) if index is not None else {}
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
        bad = skipped.get(item.id)
        if bad and {k: bad.get(k) for k in STAMP} == stamp:
            out.append(_Planned(item.id, None, False, stamp, known_bad=True))
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
            same = json.loads(marker.read_text(encoding="utf-8")) == settings
        except (OSError, ValueError):
            same = False
        if not same:
            self._remove_batches()
        self.dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(settings), encoding="utf-8")
        self.done: dict[tuple[str, str], _Done] = {}  # by (document id, content sha256)
        for meta_path in sorted(self.dir.glob("batch-*.json")):
            try:
                self._read_batch(meta_path)
            except (OSError, ValueError, KeyError) as e:
                log.warning("ignored a damaged batch of an earlier build (%s): %s", meta_path.name, e)

    def run(self, todo: list[tuple], read, *, progress: bool) -> tuple[dict[str, str], dict[str, dict]]:
        """Read, chunk and embed ``todo`` in batches. Returns the content hash of each file read, and
        for each file that could not be read its size, mtime and the reason (after warning with it)."""
        from tqdm import tqdm

        shas: dict[str, str] = {}
        bad: dict[str, dict] = {}
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
                try:
                    doc = item if isinstance(item, Document) else read(item)
                    reason = "it could not be read" if doc is None else ""
                except DocumentUnreadable as e:
                    doc, reason = None, str(e)
                    log.warning("skipped %s: %s", item.id, reason)
                if doc is None:
                    bad[item.id] = {"size": item.size, "mtime_ns": item.mtime_ns, "reason": reason}
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
        return shas, bad

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

    def _remove_batches(self) -> None:
        """Delete what builds wrote in ``build/`` - batches and their settings - and nothing else."""
        for path in [*self.dir.glob("batch-*"), *self.dir.glob(".batch-*.tmp"), self.dir / "settings.json"]:
            with contextlib.suppress(OSError):
                path.unlink()

    def clear(self) -> None:
        self._remove_batches()
        with contextlib.suppress(OSError):
            self.dir.rmdir()  # only when empty: a file we did not write stays


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
    skipped: dict[str, dict],
    progress: bool,
) -> None:
    """Write the new generation: unchanged documents copied from ``old``, the rest from ``work``."""
    import faiss
    from tqdm import tqdm

    name = f"gen-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # see _GENERATION
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
            for doc_id, sha, same, stamp, _ in bar:
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
            "skipped": skipped,
            "files": _checksums(tmp),
        }
        # the manifest goes last: a generation with a manifest is complete
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, index_dir / name)
        _point(index_dir, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # earlier generations, and those half-written by killed builds: only folders named as builds name them
    for stale in index_dir.iterdir():
        if stale.name != name and _GENERATION.fullmatch(stale.name) and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _checksums(gen: Path) -> dict[str, dict]:
    """Size and sha256 of every file of a generation but its manifest, by path relative to it."""
    out = {}
    for path in sorted(p for p in gen.rglob("*") if p.is_file() and p.name != "manifest.json"):
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        out[path.relative_to(gen).as_posix()] = {"size": path.stat().st_size, "sha256": digest}
    return out


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


def _restamp(old: StoredIndex, plan: list[_Planned], *, skipped: dict | None = None) -> None:
    """Record new sizes/mtimes of unchanged files (and files newly found unreadable) in the manifest in
    use, so the next start neither hashes nor reads them again. Best effort: a read-only index stays as
    it is, and only costs that work again next time."""
    for doc_id, _, same, stamp, _ in plan:
        if stamp and same:
            old.manifest["documents"][doc_id].update(stamp)
    if skipped is not None:
        old.manifest["skipped"] = skipped
    tmp = old.path / ".manifest.json.tmp"
    try:
        tmp.write_text(json.dumps(old.manifest, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, old.path / "manifest.json")
    except OSError as e:
        log.debug("could not update %s: %s", old.path / "manifest.json", e)
        with contextlib.suppress(OSError):
            tmp.unlink()


class _Busy(Exception):
    """Another build holds the directory's lock, and the caller would rather not wait."""


# What a folder must hold to be taken for an index: the mark INDEX_MARK every build leaves (older
# indexes: CURRENT).
MARK_TEXT = (
    "This folder holds an index written by rag (python -m index build). Do not keep other files here.\n"
)
KEPT_BESIDE = frozenset({UPLOADS, SESSIONS})  # what the chat keeps in an index folder
_GENERATION = re.compile(r"\.?gen-\d{14}-\d+-[0-9a-f]{8}(?:\.tmp)?")


def _claim(index_dir: Path) -> None:
    """Make ``index_dir`` an index folder: new, empty, or already one. A folder holding anything else is
    refused, since a build deletes what it wrote there (old generations, its ``build/`` batches)."""
    if index_dir.exists() and not index_dir.is_dir():
        raise NotAnIndex(f"{index_dir} is a file, not a folder: give the index a folder of its own")
    index_dir.mkdir(parents=True, exist_ok=True)
    if (index_dir / INDEX_MARK).is_file():
        return
    entries = set(os.listdir(index_dir))
    legacy = "CURRENT" in entries or (index_dir / "build" / "settings.json").is_file() and "LOCK" in entries
    others = entries - KEPT_BESIDE - {"LOCK"}  # the lock alone: a build that was waited for never began
    if not legacy and others:
        shown = ", ".join(sorted(others)[:5])
        raise NotAnIndex(
            f"{index_dir} is not empty and holds no index ({shown}...): an index is written only into a "
            "new or empty folder, or one that holds an index - choose another with --out"
        )
    (index_dir / INDEX_MARK).write_text(MARK_TEXT, encoding="utf-8")


@contextlib.contextmanager
def _lock(index_dir: Path, *, wait: bool):
    """One build at a time per index directory; a second one waits (with ``wait``; else raises _Busy),
    then finds the work done."""
    with (index_dir / "LOCK").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise _Busy from None
            log.warning("another build is writing %s; waiting for it to finish", index_dir)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
