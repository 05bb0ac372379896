"""Stage 4: the index on disk - build it, update it incrementally, load it.

Layout of an index directory (all transparent formats, no pickle)::

    CURRENT              name of the generation in use (replaced atomically)
    gen-<id>/manifest.json   format version, model, dimension, chunker settings, sha256 per document
    gen-<id>/chunks.jsonl    one passage per line, with its sentences, entities and noun phrases
    gen-<id>/chunks.faiss    faiss.IndexFlatIP of passage vectors; row i is line i of chunks.jsonl
    gen-<id>/sentences.npy   float32 sentence vectors, referenced by each sentence's "row"

A build writes a new generation beside the old one and then swaps ``CURRENT`` with ``os.replace``, so
a build killed at any point leaves the previous index usable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .chunking import Chunk, chunk_document
from .config import ChunkSettings
from .embedding import DIMENSION, MODEL_NAME, embed
from .errors import IndexMismatch, IndexNotFound
from .nlp import Sentence
from .types import Document

log = logging.getLogger("rag")

FORMAT_VERSION = 2
PROGRESS_MIN_DOCS = 20


@dataclass
class StoredIndex:
    """An index as loaded from disk: passages, their vectors and the sentence vectors."""

    path: Path
    manifest: dict
    chunks: list[Chunk]
    vectors: object  # faiss.Index
    sentence_vectors: np.ndarray
    # row of each sentence of each chunk in ``sentence_vectors``: rows[i][j] for chunks[i].sentences[j]
    sentence_rows: list[list[int]]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def expected_settings(chunk: ChunkSettings) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "model": MODEL_NAME,
        "dimension": DIMENSION,
        "chunker": asdict(chunk),
    }


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
        chunks, rows = _read_chunks(gen / "chunks.jsonl")
        vectors = faiss.read_index(str(gen / "chunks.faiss"))
        sentence_vectors = np.load(gen / "sentences.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, RuntimeError) as e:
        raise IndexNotFound(f"the index at {index_dir} is damaged ({e}) - run: python -m index build") from e
    if vectors.ntotal != len(chunks) or vectors.d != DIMENSION:
        raise IndexNotFound(f"the index at {index_dir} is inconsistent - run: python -m index build")
    return StoredIndex(gen, manifest, chunks, vectors, sentence_vectors, rows)


def sync(
    documents: list[Document], index_dir: Path, chunk: ChunkSettings, *, progress: bool = True
) -> StoredIndex:
    """Make the index at ``index_dir`` match ``documents``, embedding only new or changed ones."""
    index_dir = Path(index_dir)
    hashes = {d.id: sha256(d.text) for d in documents}
    if len(hashes) != len(documents):
        raise ValueError("document ids must be unique")
    old: StoredIndex | None = None
    try:
        old = load(index_dir, chunk)
    except IndexMismatch as e:
        log.warning("%s; rebuilding it from scratch", str(e).split(" - ")[0])
    except IndexNotFound:
        pass
    if old is not None:
        have = {doc_id: meta["sha256"] for doc_id, meta in old.manifest["documents"].items()}
        if have == hashes:
            return old
    kept = _reusable(old, hashes)
    todo = [d for d in documents if d.id not in kept]
    removed = sorted(set(old.manifest["documents"]) - set(hashes)) if old else []
    log.info(
        "indexing %d documents: %d new or changed, %d unchanged, %d removed",
        len(documents),
        len(todo),
        len(kept),
        len(removed),
    )

    new_chunks = _chunk_all(todo, chunk, progress=progress)
    texts = [c.embedding_text for c in new_chunks]
    sent_texts = [c.text[s.start - c.start : s.end - c.start] for c in new_chunks for s in c.sentences]
    fresh = embed(texts + sent_texts, progress=progress)
    fresh_chunk_vecs, fresh_sent_vecs = fresh[: len(texts)], fresh[len(texts) :]

    # assemble in the documents' order, old vectors copied, new ones appended
    by_doc_new: dict[str, list[int]] = {}
    for i, c in enumerate(new_chunks):
        by_doc_new.setdefault(c.doc_id, []).append(i)
    chunks: list[Chunk] = []
    chunk_vecs: list[np.ndarray] = []
    sent_vecs: list[np.ndarray] = []
    fresh_sent_offsets = np.cumsum([0] + [len(c.sentences) for c in new_chunks])
    for doc in documents:
        if doc.id in kept:
            for i in kept[doc.id]:
                chunks.append(old.chunks[i])
                chunk_vecs.append(old.vectors.reconstruct(i))
                sent_vecs.extend(old.sentence_vectors[r] for r in old.sentence_rows[i])
        else:
            for i in by_doc_new.get(doc.id, []):
                chunks.append(new_chunks[i])
                chunk_vecs.append(fresh_chunk_vecs[i])
                sent_vecs.extend(fresh_sent_vecs[fresh_sent_offsets[i] : fresh_sent_offsets[i + 1]])
    manifest = {
        **expected_settings(chunk),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "num_documents": len(documents),
        "num_chunks": len(chunks),
        "num_sentences": len(sent_vecs),
        "documents": {
            d.id: {
                "sha256": hashes[d.id],
                "title": d.title,
                "date": d.date,
                "chunks": sum(1 for c in chunks if c.doc_id == d.id),
            }
            for d in documents
        },
    }
    _write(index_dir, manifest, chunks, _stack(chunk_vecs), _stack(sent_vecs))
    return load(index_dir, chunk)


def _reusable(old: StoredIndex | None, hashes: dict[str, str]) -> dict[str, list[int]]:
    """Chunk positions in ``old`` of each document whose content is unchanged."""
    if old is None:
        return {}
    same = {
        doc_id for doc_id, meta in old.manifest["documents"].items() if hashes.get(doc_id) == meta["sha256"]
    }
    kept: dict[str, list[int]] = {doc_id: [] for doc_id in same}
    for i, c in enumerate(old.chunks):
        if c.doc_id in kept:
            kept[c.doc_id].append(i)
    return kept


def _chunk_all(docs: list[Document], chunk: ChunkSettings, *, progress: bool) -> list[Chunk]:
    from tqdm import tqdm

    out: list[Chunk] = []
    bar = tqdm(docs, desc="chunking", unit="doc", disable=not progress or len(docs) < PROGRESS_MIN_DOCS)
    for doc in bar:
        out.extend(chunk_document(doc, chunk))
    return out


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    if not rows:
        return np.zeros((0, DIMENSION), dtype=np.float32)
    return np.ascontiguousarray(np.vstack(rows), dtype=np.float32)


def _write(
    index_dir: Path, manifest: dict, chunks: list[Chunk], chunk_vecs: np.ndarray, sent_vecs: np.ndarray
) -> None:
    import faiss

    index_dir.mkdir(parents=True, exist_ok=True)
    # unique even for two builds of one process within a second
    name = f"gen-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = index_dir / f".{name}.tmp"
    tmp.mkdir()
    try:
        flat = faiss.IndexFlatIP(DIMENSION)
        flat.add(chunk_vecs)
        faiss.write_index(flat, str(tmp / "chunks.faiss"))
        np.save(tmp / "sentences.npy", sent_vecs, allow_pickle=False)
        _write_chunks(tmp / "chunks.jsonl", chunks)
        # the manifest goes last: a generation with a manifest is complete
        (tmp / "manifest.json").write_text(
            json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8"
        )
        os.replace(tmp, index_dir / name)
        pointer = index_dir / f".CURRENT.{os.getpid()}"
        pointer.write_text(name + "\n", encoding="utf-8")
        os.replace(pointer, index_dir / "CURRENT")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for stale in index_dir.glob("gen-*"):
        if stale.name != name:
            shutil.rmtree(stale, ignore_errors=True)
    for stale in index_dir.glob(".gen-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def _write_chunks(path: Path, chunks: list[Chunk]) -> None:
    row = 0
    with path.open("w", encoding="utf-8") as f:
        for c in chunks:
            sents = []
            for s in c.sentences:
                sents.append(
                    {
                        "start": s.start,
                        "end": s.end,
                        "row": row,
                        "entities": [list(e) for e in s.entities],
                        "phrases": [list(p) for p in s.phrases],
                    }
                )
                row += 1
            rec = {
                "doc": c.doc_id,
                "title": c.title,
                "date": c.date,
                "start": c.start,
                "end": c.end,
                "text": c.text,
                "sentences": sents,
            }
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _read_chunks(path: Path) -> tuple[list[Chunk], list[list[int]]]:
    chunks, rows = [], []
    with path.open(encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            sents = tuple(
                Sentence(
                    s["start"],
                    s["end"],
                    tuple(tuple(e) for e in s["entities"]),
                    tuple(tuple(p) for p in s["phrases"]),
                )
                for s in r["sentences"]
            )
            chunks.append(Chunk(r["doc"], r["title"], r["date"], r["start"], r["end"], r["text"], sents))
            rows.append([s["row"] for s in r["sentences"]])
    return chunks, rows
