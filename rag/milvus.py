"""Stage 4, optional backend: the index kept in Milvus - Milvus Lite (a file, embedded) or a Milvus server
or cluster, through the same client (``pip install -e ".[milvus]"``).

A build writes a whole new generation of collections, then points the alias (the index's name, default
``rag``) at it: readers see the old index or the new one, never half of one. A generation ``<name>__g<id>``
is four collections:

    <name>__g<id>       one row per passage: its row number (key), its JSON record (as chunks.jsonl),
                        its search terms (BM25, Milvus's own, by a BM25 function over them), its vector,
                        and its multilingual vector when built
    <name>__g<id>_s     one row per sentence: key row * 1024 + position, its vector
    <name>__g<id>_w     the passages' English words and their multilingual vectors (when built)
    <name>__g<id>_k     keys and values: the manifest, cut into parts ("manifest/00000"...; "manifest"
                        says how many, and is written last), and each search term's document frequency

The previous generation is kept until the next build, so a reader that opened it keeps working; anything
older, and any generation a killed build left half-written, is dropped by the next build. The work in
progress (finished batches, resumed after a kill) and the build lock stay in a local folder, as for a
folder index.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import multilingual
from .backend import best_by_row
from .chunking import Passage
from .config import ChunkSettings, MilvusSettings
from .embedding import DIMENSION
from .errors import IndexDamaged, IndexNotFound, IndexUnavailable, IndexUpdateFailed
from .nlp import terms
from .store import Documents, check_compatible, passage_from_record

log = logging.getLogger("rag")

BM25_K1, BM25_B = 1.5, 0.75  # bm25s's defaults, which the folder backend uses
SENTENCE_SLOTS = 1024  # a sentence's key is its passage's row * this + its position in the passage
MANIFEST_PART = 16_000  # characters of the manifest's JSON per row (a VARCHAR holds 65,535 bytes)
MAX_RECORD = 65_535  # bytes of one passage record
INSERT_ROWS = 512
_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def _pymilvus():
    """The client library, imported on first use, with an install hint when it is missing."""
    # gRPC's own log goes straight to stderr: while a build embeds for minutes between calls, Milvus Lite
    # answers the client's keep-alive pings with "too_many_pings" lines; failures raise anyway
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        import pymilvus
    except ImportError as e:
        raise IndexUnavailable(
            'an index in Milvus needs pymilvus and milvus-lite: pip install -e ".[milvus]"'
        ) from e
    return pymilvus


def client(settings: MilvusSettings):
    """One client per server and database per process (Milvus Lite allows one per file)."""
    MilvusClient = _pymilvus().MilvusClient
    # Milvus Lite's in-process server logs each call pymilvus makes that it does not implement (such as
    # AllocTimestamp, which pymilvus falls back from) as an error with a traceback
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    key = (settings.uri, settings.token, settings.database)
    with _clients_lock:
        if key not in _clients:
            if settings.lite:
                Path(settings.uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
            options = {"token": settings.token} if settings.token else {}
            if settings.database:
                options["db_name"] = settings.database
            try:
                _clients[key] = MilvusClient(settings.uri, **options)
            except Exception as e:  # pymilvus raises its own and gRPC's errors
                raise IndexUnavailable(f"cannot reach Milvus at {settings.uri}: {_why(e)}") from e
        return _clients[key]


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """Threads that wait on Milvus while this one works (a BM25 search while the question is embedded)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="milvus")


def _why(e: Exception) -> str:
    return str(getattr(e, "message", None) or e).splitlines()[0][:200]


def search_text(words: list[str]) -> str:
    """Search terms as Milvus's standard tokenizer keeps them whole (it splits at apostrophes)."""
    return " ".join(w.replace("'", "") for w in words)


class MilvusPassages(Sequence[Passage]):
    """The passages of a generation, fetched by row when asked for (the most recent ones kept)."""

    KEEP = 16384

    def __init__(self, store: MilvusIndex, count: int):
        self._store = store
        self._count = count
        self._records: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"passage {i} out of range")
        return passage_from_record(json.loads(self.raw(i)))

    def __iter__(self) -> Iterator[Passage]:
        return (self[i] for i in range(len(self)))

    def raw(self, i: int) -> bytes:
        i = int(i)
        if i not in self._records:
            self.prefetch([i])
        return self._records[i]

    def keep(self, row: int, record: str) -> None:
        if len(self._records) > self.KEEP:
            self._records.clear()
        self._records[row] = record.encode("utf-8")

    def prefetch(self, rows: Sequence[int]) -> None:
        """Fetch the records of ``rows`` not fetched yet, in one request."""
        missing = sorted({int(i) for i in rows} - self._records.keys())
        if not missing:
            return
        if len(self._records) + len(missing) > self.KEEP:
            self._records.clear()
        for r in self._store.get(missing, ["record"]):
            self._records[int(r["row"])] = r["record"].encode("utf-8")
        if any(i not in self._records for i in missing):
            raise IndexDamaged(f"the index at {self._store.location} is missing passages - rebuild it")


class MilvusIndex:
    """A generation in Milvus, opened for reading (:class:`rag.backend.Store`)."""

    CHECK_SECONDS = 5.0  # how often newer() asks Milvus which build is in use

    def __init__(self, settings: MilvusSettings, collection: str, manifest: dict, chunk: ChunkSettings):
        self.settings = settings
        self.collection = collection
        self.manifest = manifest
        self._chunk = chunk
        self._checked = time.monotonic()
        self.location = f"{settings.uri} (collection {settings.collection})"
        self._client = client(settings)
        self._passages = MilvusPassages(self, int(manifest["num_chunks"]))
        self._seen: dict[int, dict] = {}  # fields of passages that searches brought back
        self._df: dict[str, int] = {}
        self._avgdl = manifest.get("terms_per_passage") or 1.0

    def newer(self) -> MilvusIndex | None:
        """The build in use now, when another build replaced this one since it was opened (checked at
        most every :data:`CHECK_SECONDS`); else None. A reader that keeps its index open follows builds
        made elsewhere this way; the build it opened stays readable until the next one after it."""
        now = time.monotonic()
        if now - self._checked < self.CHECK_SECONDS:
            return None
        self._checked = now
        target = MilvusTarget(self.settings)
        if target.current() in (None, self.collection):
            return None
        return target.load(self._chunk)

    @property
    def passages(self) -> MilvusPassages:
        return self._passages

    @property
    def documents(self) -> Documents:
        return Documents(self.manifest["documents"])

    @property
    def has_multilingual(self) -> bool:
        return bool(self.manifest.get("multilingual"))

    def document_passages(self, doc_id: str) -> range:
        return self.documents[doc_id].passages

    def get(self, rows: Sequence[int], fields: list[str], collection: str | None = None) -> list[dict]:
        out = []
        for i in range(0, len(rows), 1000):  # a query's expression has a size limit
            out += self._client.get(
                collection or self.collection, ids=list(rows[i : i + 1000]), output_fields=fields
            )
        return out

    def _fields(self, rows: Sequence[int], names: tuple[str, ...]) -> dict[int, dict]:
        """The fields ``names`` of passages ``rows``: those a search brought back already, the rest
        fetched in one request. What a search brings back is kept, so one question costs three round
        trips to Milvus (two searches, then the sentences), not one per signal and passage."""
        out: dict[int, dict] = {}
        missing = []
        for i in map(int, rows):
            have = self._seen.get(i)
            if have is not None and all(f in have for f in names):
                out[i] = have
            else:
                missing.append(i)
        if missing:
            found = self.get(missing, list(names))
            self._keep(found)
            out.update({int(r["row"]): r for r in found})
        return out

    def _keep(self, found: list[dict]) -> None:
        if len(self._seen) > MilvusPassages.KEEP:
            self._seen.clear()
        for r in found:
            row = int(r["row"])
            self._seen.setdefault(row, {}).update(r)
            if "record" in r:
                self._passages.keep(row, r["record"])

    def _ordered(self, rows: Sequence[int], field: str) -> np.ndarray:
        if not len(rows):
            return np.zeros((0, DIMENSION if field == "dense" else multilingual.DIMENSION), np.float32)
        found = self._fields(rows, (field,))
        return np.asarray([found[int(i)][field] for i in rows], dtype=np.float32)

    def _search(self, collection, data, field, limit, metric, outputs=()) -> list[list[dict]]:
        return self._client.search(
            collection,
            data=data,
            anns_field=field,
            limit=limit,
            search_params={"metric_type": metric},
            output_fields=list(outputs) or [self._key(collection)],
        )

    def _key(self, collection: str) -> str:
        return {"_s": "key", "_w": "word", "_k": "key"}.get(collection[-2:], "row")

    def dense(self, query: np.ndarray, depth: int) -> list[tuple[int, float]]:
        vector = [query.astype(np.float32).tolist()]
        (hits,) = self._search(self.collection, vector, "dense", depth, "IP", ("record", "terms"))
        self._keep([{"row": h["row"], **h["entity"]} for h in hits])
        return [(int(h["row"]), float(h["distance"])) for h in hits]

    def passage_vectors(self, rows: Sequence[int]) -> np.ndarray:
        return self._ordered(rows, "dense")

    def lexical(self, words: list[str], depth: int) -> list[tuple[int, float]]:
        text = search_text(words)
        if not text or not any(self._frequencies(words).values()):
            return []
        (hits,) = self._search(self.collection, [text], "sparse", depth, "BM25", ("record", "terms"))
        self._keep([{"row": h["row"], **h["entity"]} for h in hits])
        # Milvus scores BM25 with a factor (k1 + 1) that bm25s leaves out, and as a negated distance
        scored = [(int(h["row"]), abs(float(h["distance"])) / (BM25_K1 + 1)) for h in hits]
        return [(i, s) for i, s in scored if s > 0]

    def lexical_later(self, words: list[str], depth: int):
        if self.settings.lite:
            # Milvus Lite searches in this process, holding the GIL: nothing would run meanwhile
            return lambda: self.lexical(words, depth)
        return _pool().submit(self.lexical, words, depth).result

    def lexical_scores(self, words: list[str], rows: Sequence[int]) -> np.ndarray:
        """Computed here from each passage's terms, the terms' document frequencies and the mean passage
        length, as Milvus computes them: a filtered Milvus search scores against the filtered rows only."""
        words = [w.replace("'", "") for w in words]
        n = max(len(self._passages), 1)
        idf = {
            t: math.log(1 + (n - df + 0.5) / (df + 0.5))
            for t in set(words)
            if (df := self.document_frequency(t))
        }
        if not idf or not len(rows):
            return np.zeros(len(rows))
        found = {i: r["terms"].split() for i, r in self._fields(rows, ("terms",)).items()}
        out = np.zeros(len(rows))
        for j, row in enumerate(rows):
            toks = found.get(int(row), [])
            tf, norm = Counter(toks), BM25_K1 * (1 - BM25_B + BM25_B * len(toks) / self._avgdl)
            out[j] = sum(idf[t] * tf[t] / (tf[t] + norm) for t in words if t in idf and tf[t])
        return out

    def document_frequency(self, term: str) -> int:
        return self._frequencies([term])[term.replace("'", "")]

    def _frequencies(self, words: list[str]) -> dict[str, int]:
        """Each term's document frequency: those not asked before fetched in one request (and kept; the
        terms asked about are a small part of the vocabulary)."""
        words = [w.replace("'", "") for w in words]
        missing = sorted(set(words) - self._df.keys())
        if missing:
            found = self._client.get(
                self.collection + "_k", ids=[f"df/{t}" for t in missing], output_fields=["number"]
            )
            got = {r["key"].removeprefix("df/"): int(r["number"]) for r in found}
            if len(self._df) > 100_000:
                self._df.clear()
            self._df.update({t: got.get(t, 0) for t in missing})
        return {t: self._df[t] for t in words}

    def passage_sentences(self, rows: Sequence[int]) -> list[np.ndarray]:
        found = self._fetch_sentences(rows)
        return [found[int(r)] for r in rows]

    def _fetch_sentences(self, rows: Sequence[int]) -> dict[int, np.ndarray]:
        out = {
            int(r): self._seen[int(r)]["sentences"] for r in rows if "sentences" in self._seen.get(int(r), ())
        }
        rows = [int(r) for r in rows if int(r) not in out]
        if not rows:
            return out
        self._passages.prefetch(rows)
        counts = [len(json.loads(self._passages.raw(i))["sentences"]) for i in rows]
        keys = [r * SENTENCE_SLOTS + j for r, c in zip(rows, counts, strict=True) for j in range(c)]
        found = {}
        for i in range(0, len(keys), 1000):
            for s in self._client.get(
                self.collection + "_s", ids=keys[i : i + 1000], output_fields=["vector"]
            ):
                found[s["key"]] = s["vector"]
        for r, c in zip(rows, counts, strict=True):
            vecs = [found[r * SENTENCE_SLOTS + j] for j in range(c)]
            out[r] = np.asarray(vecs, dtype=np.float32).reshape(c, DIMENSION)
            self._seen.setdefault(r, {})["sentences"] = out[r]
        return out

    def prefetch(self, rows: Sequence[int], *, multilingual: bool) -> None:
        """Fetch what a build copies of ``rows`` - records, vectors, sentence vectors - in few requests."""
        if rows:
            self._fields(rows, ("record", "dense", "multilingual") if multilingual else ("record", "dense"))
            self._fetch_sentences(rows)

    def multilingual_dense(self, queries: np.ndarray, depth: int) -> list[tuple[int, float]]:
        if not self.has_multilingual:
            return []
        vectors = queries.astype(np.float32).tolist()
        hits = self._search(self.collection, vectors, "multilingual", depth, "IP", ("record", "terms"))
        self._keep([{"row": h["row"], **h["entity"]} for q in hits for h in q])
        return best_by_row([(int(h["row"]), float(h["distance"])) for q in hits for h in q], depth)

    def multilingual_vectors(self, rows: Sequence[int]) -> np.ndarray:
        return self._ordered(rows, "multilingual")

    def nearest_words(self, pieces: np.ndarray) -> list[str]:
        if not self.has_multilingual or not len(pieces):
            return []
        hits = self._search(self.collection + "_w", pieces.astype(np.float32).tolist(), "vector", 1, "IP")
        near = [q[0] for q in hits if q and float(q[0]["distance"]) >= multilingual.MIN_WORD_SIMILARITY]
        return sorted({h["word"] for h in near})

    def known_word_vectors(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        out = {}
        for i in range(0, len(words), 1000):
            for r in self._client.get(
                self.collection + "_w", ids=list(words[i : i + 1000]), output_fields=["vector"]
            ):
                out[r["word"]] = np.asarray(r["vector"], dtype=np.float16)
        return out


class MilvusTarget:
    """Where a build writes, and readers open, an index in Milvus: the alias ``settings.collection``.
    ``work_dir`` is the local folder of the build's work in progress and lock."""

    def __init__(self, settings: MilvusSettings, work_dir: Path | None = None):
        self.errors = (_pymilvus().MilvusException,)  # what a failed write raises, besides OSError
        self.settings = settings
        self.work_dir = work_dir
        self.location = f"{settings.uri} (collection {settings.collection})"

    @property
    def _client(self):
        return client(self.settings)

    @staticmethod
    def name_of(index: MilvusIndex) -> str:
        return index.collection

    def write(self, chunk, plan, old, work, *, skipped, progress) -> None:
        write_milvus_generation(self, chunk, plan, old, work, skipped=skipped, progress=progress)

    def current(self) -> str | None:
        """The collection the alias points at now; None when there is none."""
        connection = self._client
        try:
            aliases = connection.list_aliases().get("aliases", [])
            if self.settings.collection not in aliases:
                return None
            return connection.describe_alias(self.settings.collection)["collection_name"]
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
        if (
            manifest.get("multilingual")
            and manifest["multilingual"].get("model") != multilingual.model_name()
        ):
            from .errors import IndexMismatch

            raise IndexMismatch(
                f"the index at {self.location} was built with another multilingual model - rebuild it: "
                "python -m index build --backend milvus"
            )
        return MilvusIndex(self.settings, name, manifest, chunk)

    def _load_collections(self, name: str) -> None:
        """Load a generation's collections into memory for search (a no-op for those loaded already;
        Milvus Lite releases them when its process ends)."""
        have = set(self._client.list_collections())
        for collection in (name + suffix for suffix in ("", "_s", "_w", "_k")):
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

    def point(self, name: str) -> None:
        alias = self.settings.collection
        if alias in self._client.list_aliases().get("aliases", []):
            self._client.alter_alias(name, alias)
        else:
            self._client.create_alias(name, alias)

    def new_generation(self, *, with_multilingual: bool) -> str:
        """Create the empty collections of a new generation; returns its name."""
        from pymilvus import DataType, Function, FunctionType

        c = self._client
        name = f"{self.settings.collection}__g{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:8]}"
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
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_field("dense", DataType.FLOAT_VECTOR, dim=DIMENSION)
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
        for suffix, key, dim in (
            ("_s", ("key", DataType.INT64), DIMENSION),
            ("_w", ("word", DataType.VARCHAR), multilingual.DIMENSION),
        ):
            if suffix == "_w" and not with_multilingual:
                continue
            s = c.create_schema(auto_id=False)
            s.add_field(
                key[0], key[1], is_primary=True, **({"max_length": 512} if key[1] == DataType.VARCHAR else {})
            )
            s.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            p = c.prepare_index_params()
            p.add_index("vector", index_type=vector_index, metric_type="IP")
            c.create_collection(name + suffix, schema=s, index_params=p)
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
        for collection in (name + suffix for suffix in ("", "_s", "_w", "_k")):
            if collection in have:
                self._client.flush(collection)

    def insert(self, collection: str, rows: list[dict]) -> None:
        for i in range(0, len(rows), INSERT_ROWS):
            self._client.insert(collection, rows[i : i + INSERT_ROWS])

    def problem(self, e: Exception) -> str:
        return f"cannot write the index at {self.location}: {_why(e)}"


def write_milvus_generation(target: MilvusTarget, chunk, plan, old, work, *, skipped, progress) -> None:
    """Write a new generation in Milvus - unchanged documents copied from ``old``, the rest from ``work`` -
    and point the alias at it. Only the previous generation is kept, for readers that opened it."""
    from tqdm import tqdm

    from .generation import gather, new_manifest, word_vectors

    previous = target.current()
    for stale in target.generations():  # half-written by a killed build, or older than the previous one
        if stale != previous:
            target.drop(stale)
    name = target.new_generation(with_multilingual=work.multilingual)
    try:
        documents: dict[str, dict] = {}
        df: Counter[str] = Counter()
        vocabulary: set[str] = set()
        n = sentences = length = 0
        passages: list[dict] = []
        sentence_rows: list[dict] = []
        bar = tqdm(plan, desc="writing", unit="doc", disable=not progress or len(plan) < 5000)
        for doc in gather(bar, old, work):
            for j, rec in enumerate(doc.records):
                if len(rec) > MAX_RECORD:
                    raise IndexUpdateFailed(
                        f"a passage of {doc.id} is too long for Milvus ({len(rec):,} bytes)"
                    )
                text = passage_from_record(json.loads(rec)).embedding_text
                words = search_text(terms(text)).split()
                df.update(set(words))
                length += len(words)
                row = {"row": n + j, "record": rec.decode("utf-8"), "terms": " ".join(words)}
                row["dense"] = doc.vectors[j].astype(np.float32).tolist()
                if doc.multilingual is not None:
                    row["multilingual"] = doc.multilingual[j].astype(np.float32).tolist()
                    vocabulary |= multilingual.vocabulary(text)
                passages.append(row)
                for p, vec in enumerate(doc.sentences[j]):
                    sentence_rows.append(
                        {"key": (n + j) * SENTENCE_SLOTS + p, "vector": vec.astype(np.float32).tolist()}
                    )
                sentences += len(doc.sentences[j])
            documents[doc.id] = doc.manifest_record(first=n)
            n += len(doc.records)
            if len(passages) >= INSERT_ROWS:
                target.insert(name, passages)
                target.insert(name + "_s", sentence_rows)
                passages, sentence_rows = [], []
        target.insert(name, passages)
        target.insert(name + "_s", sentence_rows)
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
            "backend": {"kind": "milvus", "collection": name},
            "terms_per_passage": length / n if n else 1.0,
        }
        target.write_manifest(name, manifest)  # last: a generation with a manifest is complete
        target.seal(name)
        target.point(name)
    except BaseException:
        target.drop(name)
        raise
    if previous is not None:
        for stale in target.generations():
            if stale not in (name, previous):
                target.drop(stale)
