"""Stage 4, optional backend: reading an index kept in Milvus - Milvus Lite (a file, embedded) or a Milvus
server or cluster, through the same client (``pip install -e ".[milvus]"``). :mod:`rag.milvus_target`
finds the build in use and writes new ones.

A build writes a whole new generation of collections named after the index (default ``rag``), and its
manifest last: readers see the old index or the new one, never half of one. A generation
``<name>__g<id>`` is three collections:

    <name>__g<id>       one row per passage: its row number (key), its JSON record (as chunks.jsonl),
                        its search terms (BM25, Milvus's own, by a BM25 function over them) and the
                        document frequency of each distinct one (so that a passage another ranking
                        found is scored by BM25 here, with no lookup of frequencies), its vector
                        (searched, and again as a string, to fetch), its sentences' vectors (float16,
                        in base64 strings: the folder index's values, fetched with the passage), and
                        its multilingual vector when built
    <name>__g<id>_w     the passages' English words and their multilingual vectors (when built)
    <name>__g<id>_k     keys and values: the manifest, cut into parts ("manifest/00000"...; "manifest"
                        says how many, and is written last), and each search term's document frequency

Readers open the newest generation whose manifest is complete (no alias: Milvus Lite has none).
The previous generation is kept until the next build, so a reader that opened it keeps working; anything
older, and any generation a killed build left half-written, is dropped by the next build. The work in
progress (finished batches, resumed after a kill) and the build lock stay in a local folder, as for a
folder index.
"""

from __future__ import annotations

import base64
import functools
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import multilingual
from .backend import best_by_row
from .config import ChunkSettings, MilvusSettings
from .embedding import DIMENSION, QUERY_THREADS
from .errors import IndexDamaged, IndexUnavailable
from .store import Documents, PassageRecords

log = logging.getLogger("rag")

BM25_K1, BM25_B = 1.5, 0.75  # bm25s's defaults, which the folder backend uses
MAX_SENTENCES = 1024  # sentence vectors a passage row holds
# a sentence vector as a row keeps it: float16, in base64 (768 bytes: 1,024 characters, no padding). A row
# keeps its first SENTENCES_PER_STRING sentences in one VARCHAR ("sentences") and any more in an array
# ("more_sentences", empty for nearly every passage), for the client decodes an array's elements one by one:
# a search that brought back 30 passages' sentences took 0.6 ms more as one string per sentence in an
# array, and 0.8 ms more as one string in an array, than as a VARCHAR
PACKED = 4 * (2 * DIMENSION) // 3
SENTENCES_PER_STRING = 65_535 // PACKED
# the passage vector again, as float32 in base64 (2,048 characters): a search returns it as a string, which
# the client hands over as it is, where it decodes a float vector field one number at a time (1.3 ms more
# for the 30 passages of a BM25 search, on the critical path of every question)
PACKED_VECTOR = 4 * (4 * DIMENSION) // 3
LAYOUT = 5  # of the collections; an index written in another is rebuilt (1 kept sentences apart, 2 had
# no document frequencies in the passage rows, 3 kept one string per sentence, 4 had no packed vector and
# kept every sentence in an array)
MAX_RECORD = 65_535  # bytes of one passage record
KNOWN_TERMS_PER_REQUEST = 1000  # terms asked about in one request (the spellings near a name: ~500)
LITE_START_SECONDS = 30.0  # how long a Milvus Lite process that has not opened its socket yet is waited for
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
    pymilvus = _pymilvus()
    key = (settings.uri, settings.token, settings.database)
    with _clients_lock:
        if key not in _clients:
            if settings.lite:
                Path(settings.uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
            options = {"token": settings.token} if settings.token else {}
            if settings.database:
                options["db_name"] = settings.database
            # Milvus Lite's launcher waits 0.5 s for its process, which sometimes opens its socket later
            # (seen on fresh installs): the client then fails at once, and connecting again finds it
            deadline = time.monotonic() + (LITE_START_SECONDS if settings.lite else 0.0)
            while key not in _clients:
                try:
                    with warnings.catch_warnings():
                        # Milvus Lite 2.5 reads its version through pkg_resources, which warns that it is
                        # deprecated, on every start
                        warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
                        _clients[key] = pymilvus.MilvusClient(settings.uri, **options)
                except Exception as e:  # pymilvus raises its own and gRPC's errors
                    # a Lite file another program holds, or whose folder is gone, is not waited for
                    refused = isinstance(e, pymilvus.exceptions.ConnectionConfigException)
                    if refused or time.monotonic() >= deadline:
                        raise IndexUnavailable(f"cannot reach Milvus at {settings.uri}: {_why(e)}") from e
                    time.sleep(0.5)
        return _clients[key]


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """Threads that wait on Milvus while this one works (a BM25 search while the question is embedded)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="milvus")


def _why(e: Exception) -> str:
    return str(getattr(e, "message", None) or e).splitlines()[0][:200]


def _pack(vectors: np.ndarray, dtype) -> str:
    return base64.b64encode(np.asarray(vectors, dtype=dtype).tobytes()).decode("ascii")


def _unpack(packed: Sequence[str], dtype) -> np.ndarray:
    # a vector is 768 (float16) or 1,536 (float32) bytes, a multiple of 3: its base64 has no padding, so
    # strings join as they are
    return np.frombuffer(base64.b64decode("".join(packed)), dtype=dtype).reshape(-1, DIMENSION)


def pack_sentences(vectors: np.ndarray) -> tuple[str, list[str]]:
    """A passage's sentence vectors as its row keeps them: float16 in base64, up to
    :data:`SENTENCES_PER_STRING` of them a string; the first string, and the rest."""
    step = SENTENCES_PER_STRING
    packed = [_pack(vectors[i : i + step], np.float16) for i in range(0, len(vectors), step)]
    return (packed[0] if packed else ""), packed[1:]


def pack_vector(vector: np.ndarray) -> str:
    """A passage vector as its row keeps it beside the searchable one: float32 in base64."""
    return _pack(vector, np.float32)


def held_frequencies(row: dict, words) -> tuple[list[str], dict[str, int]]:
    """A passage row's search terms, and the document frequencies of those of ``words`` that it holds
    (its "dfs" field holds one per distinct term, in order of first occurrence)."""
    toks = row["terms"].split()
    present = set(words).intersection(toks)
    if not present:
        return toks, {}
    distinct, dfs = list(dict.fromkeys(toks)), row["dfs"].split()
    return toks, {t: int(dfs[distinct.index(t)]) for t in present}


def search_text(words: list[str]) -> str:
    """Search terms as Milvus's standard tokenizer keeps them whole (it splits at apostrophes)."""
    return " ".join(w.replace("'", "") for w in words)


class MilvusPassages(PassageRecords):
    """The passages of a generation, fetched by row when asked for (the most recent ones kept)."""

    KEEP = 16384

    def __init__(self, store: MilvusIndex, count: int):
        self._store = store
        self._count = count
        self._records: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self._count

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
        self.location = settings.location
        # Milvus Lite searches on this machine, in its own process, while the question is embedded
        self.query_threads = 1 if settings.lite else QUERY_THREADS
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
        from .milvus_target import MilvusTarget

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

    def get(self, keys: Sequence, fields: list[str], collection: str | None = None) -> list[dict]:
        """Rows of ``collection`` (default: the passages) by key, in requests of at most 1,000 keys (a
        query's expression has a size limit)."""
        out = []
        for i in range(0, len(keys), 1000):
            out += self._client.get(
                collection or self.collection, ids=list(keys[i : i + 1000]), output_fields=fields
            )
        return out

    def _fields(self, rows: Sequence[int], names: tuple[str, ...]) -> dict[int, dict]:
        """The fields ``names`` of passages ``rows``: those a search brought back already, the rest
        fetched in one request. What a search brings back is kept, so one question costs two round
        trips to Milvus (its two searches), not one per signal and passage."""
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
        return {"_w": "word", "_k": "key"}.get(collection[-2:], "row")

    def dense(self, query: np.ndarray, depth: int) -> list[tuple[int, float]]:
        vector = [query.astype(np.float32).tolist()]
        # the terms and their frequencies: to score by BM25 the passages the BM25 search did not find;
        # the sentences: for the best passages' second stage
        outputs = ("record", "terms", "dfs", "sentences")
        (hits,) = self._search(self.collection, vector, "dense", depth, "IP", outputs)
        self._keep([{"row": h["id"], **h["entity"]} for h in hits])
        return [(int(h["id"]), float(h["distance"])) for h in hits]

    def passage_vectors(self, rows: Sequence[int]) -> np.ndarray:
        found = self._fields(rows, ("vector",))
        return _unpack([found[int(i)]["vector"] for i in rows], np.float32).copy()

    def lexical(self, words: list[str], depth: int) -> list[tuple[int, float]]:
        text = search_text(words)
        if not text:  # Milvus finds nothing for words no passage holds, too
            return []
        # with their vectors: the passages BM25 finds that the dense search did not are scored by both
        outputs = ("record", "terms", "dfs", "vector", "sentences")
        (hits,) = self._search(self.collection, [text], "sparse", depth, "BM25", outputs)
        self._keep([{"row": h["id"], **h["entity"]} for h in hits])
        self._note_frequencies(text.split(), [h["entity"] for h in hits], every=len(hits) < depth)
        # Milvus scores BM25 with a factor (k1 + 1) that bm25s leaves out, and as a negated distance
        scored = [(int(h["id"]), abs(float(h["distance"])) / (BM25_K1 + 1)) for h in hits]
        return [(i, s) for i, s in scored if s > 0]

    def lexical_later(self, words: list[str], depth: int):
        # Milvus (Lite too: its engine runs in a process of its own) searches while this one embeds
        return _pool().submit(self.lexical, words, depth).result

    def lexical_scores(self, words: list[str], rows: Sequence[int]) -> np.ndarray:
        """Computed here from each passage's terms, their document frequencies and the mean passage
        length, as Milvus computes them: a filtered Milvus search scores against the filtered rows only.
        A passage holds the frequencies of its own terms, which are all a score needs."""
        words = [w.replace("'", "") for w in words]
        out = np.zeros(len(rows))
        if not words or not len(rows):
            return out
        n = max(len(self._passages), 1)
        found = self._fields(rows, ("terms", "dfs"))
        for j, row in enumerate(rows):
            r = found.get(int(row))
            toks, df = held_frequencies(r, words) if r is not None else ([], {})
            norm = BM25_K1 * (1 - BM25_B + BM25_B * len(toks) / self._avgdl)
            for t in (t for t in words if t in df):
                tf = toks.count(t)
                out[j] += math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) * tf / (tf + norm)
        return out

    def _note_frequencies(self, words: list[str], rows: list[dict], *, every: bool) -> None:
        """Keep the document frequencies of ``words`` that ``rows`` hold (a row holds those of its own
        terms), so that :meth:`document_frequency` need not ask Milvus for them. ``every``: ``rows`` are
        every passage that holds any of ``words`` (a BM25 search that found fewer than it could return),
        so a word none of them holds is in no passage."""
        if len(self._df) > 100_000:
            self._df.clear()
        want = set(words) - self._df.keys()
        for r in rows:
            if not want:
                return
            _, found = held_frequencies(r, want)
            self._df.update(found)
            want -= found.keys()
        if every:
            self._df.update(dict.fromkeys(want, 0))

    def passage_terms(self, rows: Sequence[int]) -> list[str]:
        """The search terms of passages ``rows`` as their rows hold them (space-separated)."""
        found = {int(r["row"]): r["terms"] for r in self.get(list(rows), ["terms"])}
        if len(found) < len(set(rows)):
            raise IndexDamaged(f"the index at {self.location} is missing passages - rebuild it")
        return [found[int(i)] for i in rows]

    def document_frequency(self, term: str) -> int:
        return self._frequencies([term])[term.replace("'", "")]

    def known_terms(self, terms: Iterable[str]) -> set[str]:
        terms = list(terms)
        freq = self._frequencies(terms)
        return {t for t in terms if freq[t.replace("'", "")] > 0}

    def _frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        """The number of passages that hold each of ``terms``: as a search brought it back (see
        :meth:`_note_frequencies`), else asked of Milvus (KNOWN_TERMS_PER_REQUEST in one request), and
        kept (the terms asked about are a small part of the vocabulary)."""
        freq = {t: self._df.get(t) for t in {t.replace("'", "") for t in terms}}
        want = sorted(t for t, df in freq.items() if df is None)
        for i in range(0, len(want), KNOWN_TERMS_PER_REQUEST):
            part = want[i : i + KNOWN_TERMS_PER_REQUEST]
            got = dict.fromkeys(part, 0)
            ids = [f"df/{t}" for t in part]
            for r in self._client.get(self.collection + "_k", ids=ids, output_fields=["number"]):
                got[r["key"][len("df/") :]] = int(r["number"])
            freq.update(got)
            self._df.update(got)
        return freq

    def passage_sentences(self, rows: Sequence[int]) -> list[np.ndarray]:
        found = self._fields(rows, ("sentences",))
        # a full first string: the passage may have more sentences (fetched then, in one request)
        full = [r for r in rows if len(found[int(r)]["sentences"]) == SENTENCES_PER_STRING * PACKED]
        more = self._fields(full, ("more_sentences",)) if full else {}
        rest = {r: more[r]["more_sentences"] for r in map(int, full)}
        return [_unpack([found[int(r)]["sentences"], *rest.get(int(r), [])], np.float16) for r in rows]

    def prefetch(self, rows: Sequence[int], *, multilingual: bool) -> None:
        """Fetch what a build copies of ``rows`` - records, vectors, sentence vectors - in few requests."""
        if rows:
            fields = ("record", "vector", "sentences", "more_sentences")
            fields += ("multilingual",) if multilingual else ()
            self._fields(rows, fields)

    def multilingual_dense(self, queries: np.ndarray, depth: int) -> list[tuple[int, float]]:
        if not self.has_multilingual:
            return []
        vectors = queries.astype(np.float32).tolist()
        outputs = ("record", "terms", "dfs")
        hits = self._search(self.collection, vectors, "multilingual", depth, "IP", outputs)
        self._keep([{"row": h["id"], **h["entity"]} for q in hits for h in q])
        return best_by_row([(int(h["id"]), float(h["distance"])) for q in hits for h in q], depth)

    def multilingual_vectors(self, rows: Sequence[int]) -> np.ndarray:
        if not len(rows):
            return np.zeros((0, multilingual.DIMENSION), np.float32)
        found = self._fields(rows, ("multilingual",))
        return np.asarray([found[int(i)]["multilingual"] for i in rows], dtype=np.float32)

    def word_matches(self, pieces: np.ndarray) -> list[multilingual.Match]:
        if not self.has_multilingual or not len(pieces):
            return [None] * len(pieces)
        hits = self._search(self.collection + "_w", pieces.astype(np.float32).tolist(), "vector", 1, "IP")
        return [
            (q[0]["id"], float(q[0]["distance"]))
            if q and float(q[0]["distance"]) >= multilingual.MIN_WORD_SIMILARITY
            else None
            for q in hits
        ]

    def known_word_vectors(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        found = self.get(list(words), ["vector"], self.collection + "_w")
        return {r["word"]: np.asarray(r["vector"], dtype=np.float16) for r in found}
