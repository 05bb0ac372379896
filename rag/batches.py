"""Stage 4: the batches of a build - documents read, chunked and embedded, saved under ``build/`` as each
batch completes, so that a killed build resumes from them (:mod:`rag.build` assembles them into an index)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import multilingual
from .chunking import Passage, chunk_document
from .config import ChunkSettings
from .embedding import encode_passages
from .errors import (
    DocumentUnreadable,
)
from .store import expected_settings, sha256
from .types import Document

log = logging.getLogger("rag")


PROGRESS_MIN_DOCS = 20


# Passages per saved batch: a killed build loses at most this much embedding work (~7 s here).
BATCH_CHUNKS = 256


@dataclass(frozen=True)
class Done:
    """One document's finished work: its chunk records and vectors."""

    meta: dict  # title, date, pages
    records: list[bytes]  # chunks.jsonl lines
    vectors: np.ndarray  # passages x DIMENSION
    sentences: np.ndarray  # sentences x DIMENSION (float16)
    counts: list[int]  # sentences per passage
    multilingual: np.ndarray | None = None  # passages x multilingual.DIMENSION (float16), when built


class Batches:
    """The ``build/`` folder: batches of finished documents, saved as they complete."""

    def __init__(self, index_dir: Path, chunk: ChunkSettings, *, multilingual: bool = False):
        self.chunk = chunk
        self.multilingual = multilingual
        self.dir = index_dir / "build"
        settings = {**expected_settings(chunk), "multilingual": multilingual}
        marker = self.dir / "settings.json"
        try:
            same = json.loads(marker.read_text(encoding="utf-8")) == settings
        except (OSError, ValueError):
            same = False
        if not same:
            self._remove_batches()
        self.dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(settings), encoding="utf-8")
        self.done: dict[tuple[str, str], Done] = {}  # by (document id, content sha256)
        for meta_path in sorted(self.dir.glob("batch-*.json")):
            try:
                self._read_batch(meta_path)
            except (OSError, ValueError, KeyError) as e:
                log.warning("ignored a damaged batch of an earlier build (%s): %s", meta_path.name, e)

    def run(self, todo: list[tuple], read, *, progress: bool) -> tuple[dict[str, str], dict[str, dict]]:
        """Read, chunk and embed ``todo`` in batches. Returns the content hash of each file read, and
        for each file that could not be read its size, mtime and the reason (after warning with it)."""
        from tqdm import tqdm

        if self.multilingual and todo:
            # its weights decompress while the English model loads
            threading.Thread(target=multilingual.warm_up, name="multilingual-warm-up", daemon=True).start()
        shas: dict[str, str] = {}
        bad: dict[str, dict] = {}
        pending: list[tuple[str, Document, list[Passage]]] = []
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

    def _embed(self, batch: list[tuple[str, Document, list[Passage]]]) -> None:
        chunks = [c for _, _, cs in batch for c in cs]
        vectors, sentences = encode_passages(
            [c.embedding_text for c in chunks], [c.sentence_spans for c in chunks]
        )
        sentences = sentences.astype(np.float16)
        other = None
        if self.multilingual:
            other = multilingual.encode([c.embedding_text for c in chunks]).astype(np.float16)
        name = f"batch-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        np.save(self.dir / f"{name}.vectors.npy", vectors, allow_pickle=False)
        np.save(self.dir / f"{name}.sentences.npy", sentences, allow_pickle=False)
        if other is not None:
            np.save(self.dir / f"{name}.multilingual.npy", other, allow_pickle=False)
        docs, shares = [], []
        for sha, doc, cs in batch:
            meta, records = doc_meta(doc), [record(c) for c in cs]
            docs.append({"id": doc.id, "sha256": sha, "meta": meta, "records": [r.decode() for r in records]})
            shares.append(((doc.id, sha), meta, records, [len(c.sentences) for c in cs]))
        self.done.update(_split(shares, vectors, sentences, other))
        # the batch's description goes last, atomically: a batch without one never counts
        tmp = self.dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps({"documents": docs}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.dir / f"{name}.json")

    def _read_batch(self, meta_path: Path) -> None:
        name = meta_path.name.removesuffix(".json")
        batch = json.loads(meta_path.read_text(encoding="utf-8"))
        vectors = np.load(self.dir / f"{name}.vectors.npy", allow_pickle=False)
        sentences = np.load(self.dir / f"{name}.sentences.npy", allow_pickle=False)
        other = (
            np.load(self.dir / f"{name}.multilingual.npy", allow_pickle=False) if self.multilingual else None
        )
        shares = []
        for d in batch["documents"]:
            records = [r.encode("utf-8") for r in d["records"]]
            counts = [len(json.loads(r)["sentences"]) for r in records]
            shares.append(((d["id"], d["sha256"]), d["meta"], records, counts))
        passages = sum(len(records) for _, _, records, _ in shares)
        if (
            passages != len(vectors)
            or sum(sum(counts) for *_, counts in shares) != len(sentences)
            or (other is not None and len(other) != passages)
        ):
            raise ValueError("the batch's vectors do not match its passages")
        self.done.update(_split(shares, vectors, sentences, other))

    def _remove_batches(self) -> None:
        """Delete what builds wrote in ``build/`` - batches and their settings - and nothing else."""
        for path in [*self.dir.glob("batch-*"), *self.dir.glob(".batch-*.tmp"), self.dir / "settings.json"]:
            with contextlib.suppress(OSError):
                path.unlink()

    def clear(self) -> None:
        self._remove_batches()
        with contextlib.suppress(OSError):
            self.dir.rmdir()  # only when empty: a file we did not write stays


def _split(shares: list[tuple], vectors, sentences, other) -> Iterator[tuple[tuple[str, str], Done]]:
    """Each document's finished work, cut from a batch's arrays in batch order. ``shares``: per document
    its (id, sha256), meta, records and sentences per passage."""
    c0 = s0 = 0
    for key, meta, records, counts in shares:
        c1, s1 = c0 + len(records), s0 + sum(counts)
        part = other[c0:c1] if other is not None else None
        yield key, Done(meta, records, vectors[c0:c1], sentences[s0:s1], counts, part)
        c0, s0 = c1, s1


def doc_meta(doc: Document) -> dict:
    return {"title": doc.title, "date": doc.date, "pages": list(getattr(doc, "pages", ()) or ())}


def record(c: Passage) -> bytes:
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
