"""Stage 4, optional backend: where a build writes an index in Milvus and readers find it - the newest
complete generation - and writing one (:mod:`rag.milvus` reads them; it describes the layout)."""

from __future__ import annotations

import contextlib
import datetime
import json
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from . import multilingual
from .config import ChunkSettings, MilvusSettings
from .embedding import DIMENSION
from .errors import IndexDamaged, IndexMismatch, IndexNotFound, IndexUnavailable, IndexUpdateFailed
from .milvus import (
    BM25_B,
    BM25_K1,
    LAYOUT,
    MAX_RECORD,
    MAX_SENTENCES,
    PACKED,
    PACKED_VECTOR,
    SENTENCES_PER_STRING,
    MilvusIndex,
    _pymilvus,
    _why,
    client,
    pack_sentences,
    pack_vector,
    search_text,
)
from .nlp import terms
from .store import check_compatible, passage_from_record

MANIFEST_PART = 16_000  # characters of the manifest's JSON per row (a VARCHAR holds 65,535 bytes)
INSERT_ROWS = 512


class MilvusTarget:
    """Where a build writes, and readers open, an index in Milvus: the generations named after
    ``settings.collection``. ``work_dir`` is the local folder of the build's work in progress and lock."""

    def __init__(self, settings: MilvusSettings, work_dir: Path | None = None):
        self.errors = (_pymilvus().MilvusException,)  # what a failed write raises, besides OSError
        self.settings = settings
        self.work_dir = work_dir
        self.location = settings.location

    @property
    def _client(self):
        return client(self.settings)

    @staticmethod
    def name_of(index: MilvusIndex) -> str:
        return index.collection

    def write(self, chunk, plan, old, work, *, skipped, progress) -> None:
        write_milvus_generation(self, chunk, plan, old, work, skipped=skipped, progress=progress)

    def current(self) -> str | None:
        """The generation readers open: the newest one whose manifest is complete (a build writes the
        manifest's head last); None when there is none. No alias is needed, so this works on every Milvus,
        Milvus Lite included, which offers none."""
        try:
            for name in reversed(self.generations()):
                self._client.load_collection(name + "_k")
                if self._client.get(name + "_k", ids=["manifest"], output_fields=["number"]):
                    return name
            return None
        except Exception as e:
            raise IndexUnavailable(f"cannot reach Milvus at {self.settings.uri}: {_why(e)}") from e

    def load(self, chunk: ChunkSettings, *, verify: bool = True) -> MilvusIndex:
        name = self.current()
        if name is None:
            raise IndexNotFound(
                f"no index in Milvus at {self.location} - run: python -m index build --backend milvus "
                f"--uri {self.settings.uri}"
            )
        try:
            self._load_collections(name)
            manifest = self._read_manifest(name)
        except (ValueError, KeyError) as e:
            raise IndexDamaged(
                f"the index at {self.location} is damaged: its manifest cannot be read ({e}) - "
                "run: python -m index build --backend milvus"
            ) from e
        check_compatible(manifest, chunk, self.location)
        if manifest.get("backend", {}).get("layout") != LAYOUT:
            raise IndexMismatch(
                f"the index at {self.location} was written by an earlier version - rebuild it: "
                "python -m index build --backend milvus"
            )
        if (
            manifest.get("multilingual")
            and manifest["multilingual"].get("model") != multilingual.model_name()
        ):
            raise IndexMismatch(
                f"the index at {self.location} was built with another multilingual model - rebuild it: "
                "python -m index build --backend milvus"
            )
        return MilvusIndex(self.settings, name, manifest, chunk)

    def _load_collections(self, name: str) -> None:
        """Load a generation's collections into memory for search (a no-op for those loaded already;
        Milvus Lite releases them when its process ends)."""
        have = set(self._client.list_collections())
        for collection in (name + suffix for suffix in ("", "_w", "_k")):
            if collection in have:
                self._client.load_collection(collection)

    def _read_manifest(self, name: str) -> dict:
        kv = name + "_k"
        (head,) = self._client.get(kv, ids=["manifest"], output_fields=["number"]) or [None]
        if head is None:
            raise ValueError("it was never completed")
        keys = [f"manifest/{i:05d}" for i in range(int(head["number"]))]
        parts = {r["key"]: r["text"] for r in self._client.get(kv, ids=keys, output_fields=["text"])}
        manifest = json.loads("".join(parts[k] for k in keys))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("documents"), dict):
            raise ValueError("it is not an index manifest")
        return manifest

    def write_manifest(self, name: str, manifest: dict) -> None:
        """The manifest of generation ``name``, cut into parts; its head (how many) last."""
        text = json.dumps(manifest, ensure_ascii=False)
        parts = [text[i : i + MANIFEST_PART] for i in range(0, len(text), MANIFEST_PART)] or [""]
        rows = [
            {"key": f"manifest/{i:05d}", "text": p, "number": i, "v": [1.0, 0.0]} for i, p in enumerate(parts)
        ]
        self._client.upsert(name + "_k", rows)
        self._client.upsert(
            name + "_k", [{"key": "manifest", "text": "", "number": len(parts), "v": [1.0, 0.0]}]
        )
        self._client.flush(name + "_k")

    def restamp(self, old: MilvusIndex) -> None:
        with contextlib.suppress(Exception):
            self.write_manifest(old.collection, old.manifest)

    def generations(self) -> list[str]:
        """The passage collections of this index's generations, oldest first."""
        prefix = self.settings.collection + "__g"
        return sorted(
            c
            for c in self._client.list_collections()
            if c.startswith(prefix) and c[-2:] not in ("_s", "_w", "_k")
        )

    def drop(self, name: str) -> None:
        for suffix in ("", "_s", "_w", "_k"):
            with contextlib.suppress(Exception):
                self._client.drop_collection(name + suffix)

    def new_generation(self, *, with_multilingual: bool) -> str:
        """Create the empty collections of a new generation; returns its name."""
        from pymilvus import DataType, Function, FunctionType

        c = self._client
        # names sort in the order the builds began: the newest complete one is the index in use
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S%f")
        name = f"{self.settings.collection}__g{stamp}_{uuid.uuid4().hex[:8]}"
        vector_index = "FLAT" if self.settings.lite else "AUTOINDEX"  # Lite: exact, as the folder index
        s = c.create_schema(auto_id=False)
        s.add_field("row", DataType.INT64, is_primary=True)
        s.add_field("record", DataType.VARCHAR, max_length=MAX_RECORD)
        s.add_field(
            "terms",
            DataType.VARCHAR,
            max_length=65_535,
            enable_analyzer=True,
            analyzer_params={"tokenizer": "standard"},
        )
        s.add_field("dfs", DataType.VARCHAR, max_length=65_535)  # of each distinct term, in order
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_field("dense", DataType.FLOAT_VECTOR, dim=DIMENSION)
        s.add_field("vector", DataType.VARCHAR, max_length=PACKED_VECTOR)  # the same, packed
        s.add_field("sentences", DataType.VARCHAR, max_length=SENTENCES_PER_STRING * PACKED)
        s.add_field(
            "more_sentences",
            DataType.ARRAY,
            element_type=DataType.VARCHAR,
            max_capacity=-(-MAX_SENTENCES // SENTENCES_PER_STRING) - 1,
            max_length=SENTENCES_PER_STRING * PACKED,
        )
        if with_multilingual:
            s.add_field("multilingual", DataType.FLOAT_VECTOR, dim=multilingual.DIMENSION)
        s.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=["terms"],
                output_field_names=["sparse"],
            )
        )
        p = c.prepare_index_params()
        p.add_index("dense", index_type=vector_index, metric_type="IP")
        p.add_index(
            "sparse",
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params={"bm25_k1": BM25_K1, "bm25_b": BM25_B},
        )
        if with_multilingual:
            p.add_index("multilingual", index_type=vector_index, metric_type="IP")
        c.create_collection(name, schema=s, index_params=p)
        if with_multilingual:
            s = c.create_schema(auto_id=False)
            s.add_field("word", DataType.VARCHAR, is_primary=True, max_length=512)
            s.add_field("vector", DataType.FLOAT_VECTOR, dim=multilingual.DIMENSION)
            p = c.prepare_index_params()
            p.add_index("vector", index_type=vector_index, metric_type="IP")
            c.create_collection(name + "_w", schema=s, index_params=p)
        s = c.create_schema(auto_id=False)
        s.add_field("key", DataType.VARCHAR, is_primary=True, max_length=512)
        s.add_field("text", DataType.VARCHAR, max_length=65_535)
        s.add_field("number", DataType.INT64)
        s.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
        p = c.prepare_index_params()
        p.add_index("v", index_type="FLAT", metric_type="L2")
        c.create_collection(name + "_k", schema=s, index_params=p)
        return name

    def seal(self, name: str) -> None:
        """Persist the generation's collections as indexed segments: until then Milvus Lite searches its
        rows in memory one by one (a BM25 search over 5,000 passages took seconds)."""
        have = set(self._client.list_collections())
        for collection in (name + suffix for suffix in ("", "_w", "_k")):
            if collection in have:
                self._client.flush(collection)

    def insert(self, collection: str, rows: list[dict]) -> None:
        for i in range(0, len(rows), INSERT_ROWS):
            self._client.insert(collection, rows[i : i + INSERT_ROWS])

    def problem(self, e: Exception) -> str:
        return f"cannot write the index at {self.location}: {_why(e)}"


def passage_text(record: bytes) -> str:
    return passage_from_record(json.loads(record)).embedding_text


def search_words(text: str) -> list[str]:
    """A passage's search terms, as its row keeps them."""
    return search_text(terms(text)).split()


def document_frequencies(plan, old: MilvusIndex | None, work) -> Counter[str]:
    """Each search term's document frequency over the passages of ``plan``, counted before any is
    written, so that each passage row can hold those of its own terms: the terms of unchanged documents
    read from ``old``, those of the rest from ``work``'s finished batches."""
    df: Counter[str] = Counter()
    plan = list(plan)
    kept = [i for p in plan if p.same for i in old.document_passages(p.id)]
    for i in range(0, len(kept), INSERT_ROWS):
        for words in old.passage_terms(kept[i : i + INSERT_ROWS]):
            df.update(set(words.split()))
    for p in plan:
        if not p.same and (p.id, p.sha) in work.done:
            for rec in work.done[p.id, p.sha].records:
                df.update(set(search_words(passage_text(rec))))
    return df


def write_milvus_generation(target: MilvusTarget, chunk, plan, old, work, *, skipped, progress) -> None:
    """Write a new generation in Milvus - unchanged documents copied from ``old``, the rest from ``work`` -
    and its manifest last, which makes it the one readers open. Only the previous generation is kept, for
    readers that opened it."""
    from tqdm import tqdm

    from .generation import gather, new_manifest, word_vectors

    previous = target.current()
    for stale in target.generations():  # half-written by a killed build, or older than the previous one
        if stale != previous:
            target.drop(stale)
    name = target.new_generation(with_multilingual=work.multilingual)
    try:
        documents: dict[str, dict] = {}
        df = document_frequencies(plan, old, work)
        vocabulary: set[str] = set()
        n = sentences = length = 0
        passages: list[dict] = []
        bar = tqdm(plan, desc="writing", unit="doc", disable=not progress or len(plan) < 5000)
        for doc in gather(bar, old, work):
            for j, rec in enumerate(doc.records):
                if len(rec) > MAX_RECORD or len(doc.sentences[j]) > MAX_SENTENCES:
                    raise IndexUpdateFailed(
                        f"a passage of {doc.id} is too long for Milvus ({len(rec):,} bytes, "
                        f"{len(doc.sentences[j]):,} sentences)"
                    )
                text = passage_text(rec)
                words = search_words(text)
                length += len(words)
                row = {"row": n + j, "record": rec.decode("utf-8"), "terms": " ".join(words)}
                row["dfs"] = " ".join(str(df[t]) for t in dict.fromkeys(words))
                row["dense"] = doc.vectors[j].astype(np.float32).tolist()
                row["vector"] = pack_vector(doc.vectors[j])
                row["sentences"], row["more_sentences"] = pack_sentences(doc.sentences[j])
                if doc.multilingual is not None:
                    row["multilingual"] = doc.multilingual[j].astype(np.float32).tolist()
                    vocabulary |= multilingual.vocabulary(text)
                passages.append(row)
                sentences += len(doc.sentences[j])
            documents[doc.id] = doc.manifest_record(first=n)
            n += len(doc.records)
            if len(passages) >= INSERT_ROWS:
                target.insert(name, passages)
                passages = []
        target.insert(name, passages)
        target.insert(
            name + "_k", [{"key": f"df/{t}", "text": "", "number": c, "v": [1.0, 0.0]} for t, c in df.items()]
        )
        if work.multilingual and vocabulary:
            words = sorted(vocabulary)
            vecs = word_vectors(words, old)
            target.insert(
                name + "_w",
                [
                    {"word": w, "vector": v.astype(np.float32).tolist()}
                    for w, v in zip(words, vecs, strict=True)
                ],
            )
        manifest = {
            **new_manifest(chunk, documents, skipped, work.multilingual, n, sentences),
            "backend": {"kind": "milvus", "collection": name, "layout": LAYOUT},
            "terms_per_passage": length / n if n else 1.0,
        }
        target.seal(name)
        target.write_manifest(name, manifest)  # last: from now on readers open this generation
    except BaseException:
        target.drop(name)
        raise
    if previous is not None:
        for stale in target.generations():
            if stale not in (name, previous):
                target.drop(stale)
