"""The report of ``python -m eval.bench``: result dataclasses, the statistics computed from the children's raw
measurements, and the printed tables and JSON. Pure: no model, no index, no ``rag``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from eval import metrics
from eval.bench_corpus import BenchQuestion

K = 5  # passages retrieved per question: hit@5 needs at least 5

# What one indexed unit ("chunk") is in each system, printed under the tables.
CHUNK_UNITS = {
    "ours": "a passage of whole sentences of at most 100 cl100k tokens, 24 tokens of overlap "
    "(its sentence vectors come from the same encoder pass; a second, multilingual vector per passage)",
    "ours-en": "as ours, without the multilingual vector",
    "ours-milvus": "as ours, kept in Milvus Lite",
    "bare": "one document = one vector (the encoder reads its first 256 word pieces)",
    "txtai": "one document = one row (no chunking; the encoder reads its first 256 word pieces)",
}


@dataclass
class SystemResult:
    """One system on one corpus. Rates are fractions in 0..1; None where not measured or not applicable."""

    system: str
    status: str  # "ok", "not run" or "failed"
    note: str = ""  # why not run / what failed
    chunk_unit: str = ""
    documents: int | None = None
    chunks: int | None = None
    build_s: float | None = None
    docs_per_s: float | None = None
    chunks_per_s: float | None = None
    tokens_per_s: float | None = None
    build_peak_mib: float | None = None
    open_s: float | None = None
    first_query_s: float | None = None
    query_peak_mib: float | None = None
    retrieve_p50_ms: float | None = None
    retrieve_p95_ms: float | None = None
    search_p50_ms: float | None = None
    search_p95_ms: float | None = None
    ask_p50_ms: float | None = None
    ask_p95_ms: float | None = None
    hit_at_1: float | None = None
    hit_at_5: float | None = None
    ask_hit_at_1: float | None = None  # ask()'s first citation is from the gold document
    exact_match: float | None = None
    f1: float | None = None
    abstained: float | None = None
    threads: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)


@dataclass
class CorpusReport:
    corpus: str
    documents: int
    tokens: int  # cl100k tokens over all documents: the same for every system
    questions: int
    notes: list[str]
    systems: list[SystemResult]


@dataclass
class BenchReport:
    machine: dict
    options: dict
    corpora: list[CorpusReport]
    ann: dict | None = None


# ---- pure parts: statistics and scores ----------------------------------------------------------------


def latency_summary(latencies_ms: list[float]) -> tuple[float | None, float | None]:
    """(p50, p95) with numpy's default linear interpolation; (None, None) for no values."""
    return metrics.percentile(latencies_ms, 50), metrics.percentile(latencies_ms, 95)


def hit_rate(retrieved: list[list[str]], golds: list[str | None], k: int) -> float | None:
    """Share of questions whose gold document is among their first ``k`` retrieved ids (None: no golds)."""
    if len(retrieved) != len(golds):
        raise ValueError(f"{len(retrieved)} result lists for {len(golds)} questions")
    scored = [
        metrics.hit_at(metrics.gold_rank(ids, gold), k)
        for ids, gold in zip(retrieved, golds, strict=True)
        if gold is not None
    ]
    return metrics.mean(float(h) for h in scored)


def answer_scores(
    predictions: list[str], answers: list[tuple[str, ...]]
) -> tuple[float | None, float | None]:
    """Mean SQuAD exact match and F1 (fractions) over questions that have gold answers."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} questions")
    pairs = [(p, a) for p, a in zip(predictions, answers, strict=True) if a]
    return (
        metrics.mean(metrics.best_exact_match(p, a) for p, a in pairs),
        metrics.mean(metrics.best_f1(p, a) for p, a in pairs),
    )


def _rate(count: int | None, seconds: float | None) -> float | None:
    return count / seconds if count is not None and seconds else None


def summarize(
    system: str, build: dict, query: dict, questions: list[BenchQuestion], *, documents: int, tokens: int
) -> SystemResult:
    """A system's row from its build and query children's raw results."""
    r = SystemResult(system=system, status="ok", chunk_unit=CHUNK_UNITS[system], documents=documents)
    r.chunks, r.build_s = build.get("chunks"), build.get("build_s")
    r.docs_per_s, r.chunks_per_s = _rate(documents, r.build_s), _rate(r.chunks, r.build_s)
    r.tokens_per_s = _rate(tokens, r.build_s)
    r.build_peak_mib, r.query_peak_mib = build.get("peak_rss_mib"), query.get("peak_rss_mib")
    r.open_s, r.first_query_s = query.get("open_s"), query.get("first_query_s")
    r.retrieve_p50_ms, r.retrieve_p95_ms = latency_summary(query.get("retrieve_ms", []))
    r.search_p50_ms, r.search_p95_ms = latency_summary(query.get("search_ms", []))
    r.ask_p50_ms, r.ask_p95_ms = latency_summary(query.get("ask_ms", []))
    golds = [q.gold for q in questions]
    if "retrieved" in query:
        r.hit_at_1 = hit_rate(query["retrieved"], golds, 1)
        r.hit_at_5 = hit_rate(query["retrieved"], golds, K)
    if "predictions" in query:
        r.exact_match, r.f1 = answer_scores(query["predictions"], [q.answers for q in questions])
        r.abstained = metrics.mean(float(a) for a in query["abstained"])
        r.ask_hit_at_1 = hit_rate(query["ask_sources"], golds, 1)
    r.threads = query.get("threads") or build.get("threads") or {}
    r.facts = {
        k: v for k, v in {**build, **query}.items() if k in ("version", "config", "faiss_index", "rag")
    }
    return r


# ---- output -------------------------------------------------------------------------------------------

_ROWS = [  # (label, attribute, format)
    ("documents", "documents", "{:,}"),
    ("chunks", "chunks", "{:,}"),
    ("build s", "build_s", "{:.1f}"),
    ("build docs/s", "docs_per_s", "{:,.1f}"),
    ("build chunks/s", "chunks_per_s", "{:,.1f}"),
    ("build tokens/s", "tokens_per_s", "{:,.0f}"),
    ("build peak RSS MiB", "build_peak_mib", "{:,.0f}"),
    ("open s (cold, new process)", "open_s", "{:.2f}"),
    ("first retrieve s", "first_query_s", "{:.2f}"),
    ("query peak RSS MiB", "query_peak_mib", "{:,.0f}"),
    ("retrieve p50 ms", "retrieve_p50_ms", "{:.1f}"),
    ("retrieve p95 ms", "retrieve_p95_ms", "{:.1f}"),
    ("faiss search p50 ms", "search_p50_ms", "{:.3f}"),
    ("faiss search p95 ms", "search_p95_ms", "{:.3f}"),
    ("ask p50 ms", "ask_p50_ms", "{:.1f}"),
    ("ask p95 ms", "ask_p95_ms", "{:.1f}"),
    ("hit@1 %", "hit_at_1", "pct"),
    ("hit@5 %", "hit_at_5", "pct"),
    ("ask hit@1 %", "ask_hit_at_1", "pct"),
    ("EM", "exact_match", "pct"),
    ("F1", "f1", "pct"),
    ("abstained %", "abstained", "pct"),
]


def _cell(value, fmt: str) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.1f}" if fmt == "pct" else fmt.format(value)


def format_corpus(report: CorpusReport) -> str:
    """The systems side by side: one column each, one row per measure; rows nobody measured are left out."""
    systems = report.systems
    rows = [("status", [s.status for s in systems])]
    for label, attr, fmt in _ROWS:
        values = [getattr(s, attr) for s in systems]
        if any(v is not None for v in values):
            rows.append((label, [_cell(v, fmt) for v in values]))
    if any(s.threads for s in systems):
        threads = [f"{s.threads.get('torch', '?')}/{s.threads.get('faiss', '?')}" if s.threads else "n/a"
                   for s in systems]  # fmt: skip
        rows.append(("threads torch/faiss", threads))
    width = max(len(label) for label, _ in rows)
    col = max(12, *(len(c) for _, cells in rows for c in cells), *(len(s.system) for s in systems))
    title = (
        f"== {report.corpus}: {report.documents:,} documents, {report.tokens:,} cl100k tokens, "
        f"{report.questions:,} questions, k={K}"
    )
    lines = [title, f"{'':<{width}}  " + "  ".join(f"{s.system:>{col}}" for s in systems)]
    lines += [f"{label:<{width}}  " + "  ".join(f"{c:>{col}}" for c in cells) for label, cells in rows]
    for s in systems:
        if s.status == "ok":
            lines.append(f"  {s.system} chunk: {s.chunk_unit}")
        else:
            lines.append(f"  {s.system} {s.status}: {s.note}")
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def to_json(report: BenchReport) -> str:
    return json.dumps(dataclasses.asdict(report), indent=2, ensure_ascii=False) + "\n"


def write_json(path: Path, report: BenchReport) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(to_json(report), encoding="utf-8")
    os.replace(tmp, path)
