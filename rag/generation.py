"""Stage 4: writing one generation of the index - passages, vectors, sentence vectors and BM25 from the
finished batches (and an earlier index), checksummed, then made the one in use by replacing ``CURRENT``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import multilingual
from .backend import Store
from .batches import Batches
from .config import ChunkSettings
from .embedding import DIMENSION
from .nlp import terms
from .store import GENERATION, expected_settings, passage_from_record

log = logging.getLogger("rag")


# Past this many passages the vectors go into an inverted-file index (FAISS IndexIVFFlat) instead of an
# exact flat one. Measured here (python -m eval.bench --ann, MiniLM vectors): one exact query takes ~11 ms
# at 50,000 passages and ~25 ms at 100,000, while IVF with nprobe 32 takes under 0.5 ms at recall@10
# >= 0.99. HNSW lost to IVF on these vectors (recall@10 0.89 at efSearch 256 for 100,000).
IVF_FROM = 50_000


IVF_NPROBE = 32  # lists read per query


def ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: 4 sqrt(n) (FAISS guidance), at least 39 vectors to train each."""
    return max(1, min(int(4 * n**0.5), n // 39))


class Planned(NamedTuple):
    """What a build does with one item."""

    id: str
    sha: str | None  # content sha256; None when the file could not be read
    same: bool  # unchanged since the index copied from: copied, not embedded
    stamp: dict | None  # a file's size and mtime, None for a document given in memory
    known_bad: bool = False  # skipped as unreadable before, and unchanged since: not read again


def write_generation(
    index_dir: Path,
    chunk: ChunkSettings,
    plan: list[Planned],
    old: Store | None,
    work: Batches,
    *,
    skipped: dict[str, dict],
    progress: bool,
) -> None:
    """Write the new generation: unchanged documents copied from ``old``, the rest from ``work``; with
    multilingual vectors when ``work`` makes them (``old`` then has them too)."""
    import faiss
    from tqdm import tqdm

    name = f"gen-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # see GENERATION
    tmp = index_dir / f".{name}.tmp"
    tmp.mkdir()
    try:
        documents: dict[str, dict] = {}
        offsets, first = [0], [0]
        vectors: list[np.ndarray] = []
        sentences: list[np.ndarray] = []
        others: list[np.ndarray] = []  # multilingual passage vectors
        vocabulary: set[str] = set()  # the passages' English words, for questions in other languages
        tokens: list[list[str]] = []
        n = 0
        bar = tqdm(plan, desc="writing", unit="doc", disable=not progress or len(plan) < 5000)
        with (tmp / "chunks.jsonl").open("wb") as out:
            for doc in gather(bar, old, work):
                records, counts = doc.records, [len(x) for x in doc.sentences]
                vectors.append(doc.vectors)
                sentences.append(
                    np.concatenate(doc.sentences) if doc.sentences else np.zeros((0, DIMENSION), np.float16)
                )
                if doc.multilingual is not None:
                    others.append(doc.multilingual)
                for rec, count in zip(records, counts, strict=True):
                    out.write(rec)
                    offsets.append(offsets[-1] + len(rec))
                    first.append(first[-1] + count)
                    text = passage_from_record(json.loads(rec)).embedding_text
                    tokens.append(terms(text))
                    if work.multilingual:
                        vocabulary |= multilingual.vocabulary(text)
                documents[doc.id] = doc.manifest_record(first=n)
                n += len(records)
        np.save(tmp / "chunks.offsets.npy", np.asarray(offsets, dtype=np.int64), allow_pickle=False)
        np.save(tmp / "sentences.first.npy", np.asarray(first, dtype=np.int64), allow_pickle=False)
        sent = np.concatenate(sentences) if sentences else np.zeros((0, DIMENSION), np.float16)
        np.save(tmp / "sentences.npy", sent.astype(np.float16, copy=False), allow_pickle=False)
        del sentences, sent
        if work.multilingual:
            other = np.concatenate(others) if others else np.zeros((0, multilingual.DIMENSION), np.float16)
            np.save(tmp / "multilingual.npy", other.astype(np.float16, copy=False), allow_pickle=False)
            del others, other
            _save_words(tmp, sorted(vocabulary), old)
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
            **new_manifest(chunk, documents, skipped, work.multilingual, n, int(first[-1])),
            "vector_index": vector_index,
            "files": _checksums(tmp),
        }
        # the manifest goes last: a generation with a manifest is complete
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, index_dir / name)
        point(index_dir, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # earlier generations, and those half-written by killed builds: only folders named as builds name them
    for stale in index_dir.iterdir():
        if stale.name != name and GENERATION.fullmatch(stale.name) and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def new_manifest(
    chunk: ChunkSettings,
    documents: dict,
    skipped: dict,
    with_multilingual: bool,
    passages: int,
    sentences: int,
) -> dict:
    """The manifest of a new generation, as every backend records it (rag.store describes the fields)."""
    return {
        **expected_settings(chunk),
        "multilingual": (
            {"model": multilingual.model_name(), "dimension": multilingual.DIMENSION}
            if with_multilingual
            else None
        ),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "num_documents": len(documents),
        "num_chunks": passages,
        "num_sentences": sentences,
        "documents": documents,
        "skipped": skipped,
    }


class Gathered(NamedTuple):
    """One document of a new generation, as copied from the old index or embedded by this build."""

    id: str
    sha: str
    stamp: dict | None
    info: dict  # title, date, pages
    records: list[bytes]  # chunks.jsonl lines
    vectors: np.ndarray  # passages x DIMENSION
    sentences: list[np.ndarray]  # per passage, its sentences' vectors (float16)
    multilingual: np.ndarray | None  # passages x multilingual.DIMENSION (float16), when built

    def manifest_record(self, *, first: int) -> dict:
        return {
            "sha256": self.sha,
            **(self.stamp or {}),
            **self.info,
            "first": first,
            "chunks": len(self.records),
        }


PREFETCH_DOCS = 256  # documents whose passages a build copying from a server fetches at once


def gather(plan, old: Store | None, work: Batches) -> Iterator[Gathered]:
    """The documents of ``plan`` in order: unchanged ones copied from ``old``, the rest from ``work``'s
    finished batches; a file that could not be read is left out (the reader said why)."""
    plan = list(plan)
    for n, (doc_id, sha, same, stamp, _) in enumerate(plan):
        if old is not None and n % PREFETCH_DOCS == 0:  # a store on a server: many passages a request
            ahead = [old.document_passages(p.id) for p in plan[n : n + PREFETCH_DOCS] if p.same]
            old.prefetch([i for rows in ahead for i in rows], multilingual=work.multilingual)
        if same:
            meta = old.manifest["documents"][doc_id]
            records, vecs, sents, other = copy_document(
                old, old.document_passages(doc_id), multilingual=work.multilingual
            )
            info = {k: meta.get(k) for k in ("title", "date", "pages")}
            yield Gathered(doc_id, sha, stamp, info, records, vecs, sents, other)
        elif (doc_id, sha) in work.done:
            done = work.done[doc_id, sha]
            cuts = np.cumsum(done.counts)[:-1] if done.counts else []
            sents = np.split(done.sentences, cuts) if done.counts else []
            yield Gathered(
                doc_id, sha, stamp, done.meta, done.records, done.vectors, sents, done.multilingual
            )


def copy_document(old: Store, rows: range, *, multilingual: bool) -> tuple:
    """What a build copies of one unchanged document from the index ``old``: its records, passage vectors,
    each passage's sentence vectors (float16) and, with ``multilingual``, its multilingual vectors."""
    records = [old.passages.raw(i) for i in rows]
    vectors = old.passage_vectors(list(rows))
    sentences = [np.asarray(s, dtype=np.float16) for s in old.passage_sentences(list(rows))]
    other = old.multilingual_vectors(list(rows)).astype(np.float16) if multilingual and len(rows) else None
    return records, vectors, sentences, other


def word_vectors(words: list[str], old: Store | None) -> np.ndarray:
    """The multilingual vectors of ``words`` (float16), those ``old`` holds reused, the rest encoded."""
    known = old.known_word_vectors(words) if old is not None and old.has_multilingual else {}
    new = [w for w in words if w not in known]
    if new:
        log.info("encoding %d new words for questions in other languages", len(new))
    fresh = dict(zip(new, multilingual.encode(new).astype(np.float16), strict=True))
    vectors = np.zeros((len(words), multilingual.DIMENSION), np.float16)
    for i, w in enumerate(words):
        vectors[i] = fresh[w] if w in fresh else known[w]
    return vectors


def _save_words(gen: Path, words: list[str], old: Store | None) -> None:
    vectors = word_vectors(words, old)
    np.save(gen / "multilingual.words.npy", vectors, allow_pickle=False)
    (gen / "multilingual.words.json").write_text(json.dumps(words), encoding="utf-8")


def _checksums(gen: Path) -> dict[str, dict]:
    """Size and sha256 of every file of a generation but its manifest, by path relative to it."""
    out = {}
    for path in sorted(p for p in gen.rglob("*") if p.is_file() and p.name != "manifest.json"):
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        out[path.relative_to(gen).as_posix()] = {"size": path.stat().st_size, "sha256": digest}
    return out


def _save_bm25(tokens: list[list[str]], path: Path) -> None:
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    bm25 = bm25s.BM25()
    bm25.index(tokens, show_progress=False)
    bm25.save(str(path))


def point(index_dir: Path, name: str) -> None:
    pointer = index_dir / f".CURRENT.{os.getpid()}"
    pointer.write_text(name + "\n", encoding="utf-8")
    os.replace(pointer, index_dir / "CURRENT")
