"""The benchmark's own logic (python -m eval.bench): statistics, scores, corpora, report and ANN recall.

No model is loaded and no child process is started: these are the parts whose mistakes would silently
skew every figure the benchmark prints.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from eval import bench, bench_ann, bench_corpus, bench_ours, bench_report, bench_systems
from eval.bench_corpus import BenchDoc, BenchQuestion
from eval.bench_report import CorpusReport, SystemResult
from eval.data import load_dataset

# ---- statistics and scores ------------------------------------------------------------------------------


def test_latency_percentiles_by_hand_and_as_numpy():
    # p50 of 1..4 sits halfway between 2 and 3; p95 at position 3 * 0.95 = 2.85, between 3 and 4
    assert bench_report.latency_summary([4.0, 1.0, 3.0, 2.0]) == pytest.approx((2.5, 3.85))
    values = list(np.random.default_rng(3).exponential(20, size=101))
    assert bench_report.latency_summary(values) == pytest.approx(tuple(np.percentile(values, [50, 95])))
    assert bench_report.latency_summary([]) == (None, None)


def test_hit_rate_counts_the_gold_document_within_k():
    retrieved = [["a", "b", "c"], ["c", "a"], ["x", "y"], ["q"]]
    golds = ["a", "a", "z", None]  # the last question has no gold: not counted
    assert bench_report.hit_rate(retrieved, golds, 1) == pytest.approx(1 / 3)
    assert bench_report.hit_rate(retrieved, golds, 2) == pytest.approx(2 / 3)
    assert bench_report.hit_rate([["q"]], [None], 5) is None
    with pytest.raises(ValueError):
        bench_report.hit_rate([["a"]], ["a", "b"], 1)


def test_answer_scores_use_squad_normalisation_and_the_best_gold():
    predictions = ["The Denver Broncos!", "a cat sat", "nothing"]
    answers = [("Denver Broncos",), ("dog", "cat"), ("Paris",)]
    em, f1 = bench_report.answer_scores(predictions, answers)
    assert em == pytest.approx(1 / 3)  # only the first matches exactly after normalisation
    # F1: 1.0; "cat sat" vs "cat" -> precision 1/2, recall 1 -> 2/3; 0.0
    assert f1 == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert bench_report.answer_scores(["x"], [()]) == (None, None)


def test_summarize_turns_raw_child_results_into_rates():
    questions = [BenchQuestion("1", "q1", "d1", ("Paris",)), BenchQuestion("2", "q2", "d2", ("Rome",))]
    build = {"ok": True, "build_s": 4.0, "chunks": 6, "peak_rss_mib": 300.0, "threads": {"torch": 2}}
    query = {
        "ok": True,
        "open_s": 0.5,
        "first_query_s": 1.5,
        "retrieve_ms": [10.0, 30.0],
        "retrieved": [["d1", "d9"], ["d9", "d2"]],
        "ask_ms": [100.0, 300.0],
        "predictions": ["Paris", "Milan"],
        "abstained": [False, True],
        "ask_sources": [["d1"], ["d9", "d2"]],
        "peak_rss_mib": 500.0,
    }
    r = bench_report.summarize("ours", build, query, questions, documents=2, tokens=400)
    assert (r.docs_per_s, r.chunks_per_s, r.tokens_per_s) == (0.5, 1.5, 100.0)
    assert (r.build_peak_mib, r.query_peak_mib, r.open_s) == (300.0, 500.0, 0.5)
    assert r.retrieve_p50_ms == 20.0 and r.ask_p50_ms == 200.0
    assert (r.hit_at_1, r.hit_at_5) == (0.5, 1.0)
    assert (r.exact_match, r.f1, r.abstained, r.ask_hit_at_1) == (0.5, 0.5, 0.5, 0.5)
    assert r.search_p50_ms is None  # not measured for this system
    assert r.threads == {"torch": 2}


# ---- the printed table and the JSON report --------------------------------------------------------------


def _corpus_report() -> CorpusReport:
    ours = SystemResult("ours", "ok", chunk_unit="a passage", documents=10, chunks=15, retrieve_p50_ms=12.34)
    ours.threads = {"torch": 2, "faiss": 1}
    bare = SystemResult("bare", "ok", chunk_unit="a vector", documents=10, chunks=10, search_p50_ms=0.0123)
    missing = SystemResult("txtai", "not run", note=bench.TXTAI_HINT)
    return CorpusReport("squad", 10, 1234, 5, ["a note"], [ours, bare, missing])


def test_table_puts_systems_side_by_side_and_drops_unmeasured_rows():
    table = bench_report.format_corpus(_corpus_report())
    lines = table.splitlines()
    assert lines[1].split() == ["ours", "bare", "txtai"]
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[2:] if not line.startswith("  ")]
    by_label = {row[0]: row[1:] for row in cells}
    assert by_label["status"] == ["ok", "ok", "not run"]
    assert by_label["chunks"] == ["15", "10", "n/a"]
    assert by_label["retrieve p50 ms"] == ["12.3", "n/a", "n/a"]
    assert by_label["faiss search p50 ms"] == ["n/a", "0.012", "n/a"]
    assert by_label["threads torch/faiss"] == ["2/1", "n/a", "n/a"]
    assert "ask p50 ms" not in by_label and "EM" not in by_label  # nobody measured them
    assert "  ours chunk: a passage" in lines
    assert f"  txtai not run: {bench.TXTAI_HINT}" in lines
    assert "  note: a note" in lines


def test_json_report_round_trips(tmp_path):
    report = bench_report.BenchReport(machine={"cpus": 2}, options={"seed": 0}, corpora=[_corpus_report()])
    path = tmp_path / "out" / "bench.json"
    bench_report.write_json(path, report)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["machine"] == {"cpus": 2}
    systems = data["corpora"][0]["systems"]
    assert [s["system"] for s in systems] == ["ours", "bare", "txtai"]
    assert systems[0]["retrieve_p50_ms"] == 12.34 and systems[2]["status"] == "not run"
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]  # no temporary file left behind


def test_command_writes_json_only_when_asked_and_records_the_machine(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert bench.main(["--corpus", "none", "--quiet"]) == 0
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory
    out = tmp_path / "report.json"
    assert bench.main(["--corpus", "none", "--quiet", "--json", str(out)]) == 0
    machine = json.loads(out.read_text(encoding="utf-8"))["machine"]
    assert machine["cpus"] >= 1 and "faiss-cpu" in machine["versions"] and "load_average_at_end" in machine


def test_missing_txtai_is_reported_as_not_run_with_the_install_hint(tmp_path, monkeypatch, capsys):
    real_find_spec = bench.importlib.util.find_spec
    monkeypatch.setattr(
        bench.importlib.util, "find_spec", lambda name: None if name == "txtai" else real_find_spec(name)
    )
    args = bench.parser().parse_args(["--systems", "txtai", "--quiet"])
    docs = [BenchDoc("d1", "Title\n\nText.")]
    questions = [BenchQuestion("q1", "What?", "d1", ("Text",))]
    results = bench.run_corpus(
        "squad", docs, questions, questions, tokens=5, args=args, workdir=tmp_path, log=print
    )
    assert [(r.system, r.status, r.note) for r in results] == [("txtai", "not run", bench.TXTAI_HINT)]
    assert capsys.readouterr().err.strip() == bench.TXTAI_HINT


def test_a_killed_child_is_named_by_its_signal():
    assert bench.how_it_ended(-15) == "was killed by SIGTERM"
    assert bench.how_it_ended(-9) == "was killed by SIGKILL"
    assert bench.how_it_ended(3) == "exited with code 3"


def test_option_lists_are_validated():
    args = bench.parser().parse_args(["--systems", "bare,ours,bare", "--ann-sizes", "1000,2000"])
    assert args.systems == ["bare", "ours"] and args.ann_sizes == [1000, 2000]
    with pytest.raises(SystemExit):
        bench.parser().parse_args(["--systems", "ours,lucene"])


# ---- corpora --------------------------------------------------------------------------------------------


def test_synthetic_corpus_is_deterministic_and_one_chunk_sized():
    vocab = bench_corpus.vocabulary(500)
    assert len(set(vocab)) == 500 and vocab == bench_corpus.vocabulary(500)
    a = bench_corpus.synthetic_corpus(50, seed=7, vocab=vocab)
    assert a == bench_corpus.synthetic_corpus(50, seed=7, vocab=vocab)
    assert a != bench_corpus.synthetic_corpus(50, seed=8, vocab=vocab)
    assert len({d.id for d in a}) == 50
    for doc in a:
        title, blank, body = doc.text.split("\n", 2)
        assert blank == "" and len(title.split()) == bench_corpus.WORDS_PER_TITLE
        words = body.replace(".", "").lower().split()
        assert bench_corpus.WORDS_PER_DOC[0] <= len(words) <= bench_corpus.WORDS_PER_DOC[1]
        assert set(words) <= set(vocab)
    queries = bench_corpus.synthetic_queries(20, seed=1, vocab=vocab)
    assert queries == bench_corpus.synthetic_queries(20, seed=1, vocab=vocab)
    assert all(3 <= len(q.question.split()) <= 8 and q.gold is None for q in queries)


def test_squad_corpus_samples_reproducibly_and_keeps_warmups_apart(tmp_path):
    paragraphs = [
        {"context": f"Paragraph {i} text.", "qas": [{"id": f"q{i}-{j}", "question": f"Q {i} {j}?",
         "answers": [{"text": "text", "answer_start": 0}]} for j in range(3)]}
        for i in range(6)
    ]  # fmt: skip
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": [{"title": "Some_Title", "paragraphs": paragraphs}]}))
    dataset = load_dataset(path)
    docs, questions, warmups = bench_corpus.squad_corpus(dataset, questions=5, seed=1)
    assert len(docs) == 6 and docs[0].text == "Some Title\n\nParagraph 0 text."
    assert len(questions) == 5 and len(warmups) == 18 - 5
    assert not {q.id for q in questions} & {q.id for q in warmups}
    assert (docs, questions, warmups) == bench_corpus.squad_corpus(dataset, questions=5, seed=1)
    assert questions != bench_corpus.squad_corpus(dataset, questions=5, seed=2)[1]
    few, asked, _ = bench_corpus.squad_corpus(dataset, questions=100, seed=1, limit_docs=2)
    assert len(few) == 2 and {q.gold for q in asked} <= {d.id for d in few} and len(asked) == 6


def test_corpus_files_round_trip(tmp_path):
    docs = [BenchDoc("a", "x\n\ny"), BenchDoc("b", "é")]
    questions = [BenchQuestion("1", "why?", "a", ("because",)), BenchQuestion("2", "who?", None)]
    bench_corpus.write_jsonl(tmp_path / "d.jsonl", docs)
    bench_corpus.write_jsonl(tmp_path / "q.jsonl", questions)
    assert bench_corpus.read_docs(tmp_path / "d.jsonl") == docs
    assert bench_corpus.read_questions(tmp_path / "q.jsonl") == questions


# ---- the ANN study --------------------------------------------------------------------------------------


def test_exact_top_k_and_recall_match_brute_force():
    vectors = bench_ann.random_unit_vectors(300, dim=16, seed=0)
    queries = bench_ann.random_unit_vectors(12, dim=16, seed=1)
    brute = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    exact = bench_ann.exact_top_k(vectors, queries, 10)
    assert np.array_equal(exact, brute)
    assert bench_ann.recall_at_k(exact, brute, 10) == 1.0
    # keep the first 7 true neighbours of each query, replace 3 by wrong ids or FAISS's -1
    partial = brute.copy()
    partial[:, 7:] = [brute[0, -1] + 1000, -1, -1]
    assert bench_ann.recall_at_k(partial, brute, 10) == pytest.approx(0.7)
    assert bench_ann.recall_at_k(brute[:, ::-1], brute, 10) == 1.0  # order within the top k does not matter


def test_faiss_indexes_scored_against_numpy_brute_force():
    faiss = pytest.importorskip("faiss")
    vectors = bench_ann.random_unit_vectors(400, dim=16, seed=2)
    queries = bench_ann.random_unit_vectors(10, dim=16, seed=3)
    brute = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    flat = faiss.IndexFlatIP(16)
    flat.add(vectors)
    found, latencies = bench_ann.timed_search(flat, queries, 10)
    assert len(latencies) == 10 and bench_ann.recall_at_k(found, brute, 10) == 1.0
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors)
    ivf.add(vectors)
    ivf.nprobe = 1
    found, _ = bench_ann.timed_search(ivf, queries, 10)
    by_hand = np.mean([len(set(f[f >= 0]) & set(b)) / 10 for f, b in zip(found, brute, strict=True)])
    assert bench_ann.recall_at_k(found, brute, 10) == pytest.approx(by_hand)
    assert by_hand < 1.0  # one list of eight is a real approximation here


def test_study_yields_every_configuration_with_flat_as_reference():
    pytest.importorskip("faiss")
    vectors = bench_ann.random_unit_vectors(2000, dim=16, seed=4)
    queries = bench_ann.random_unit_vectors(5, dim=16, seed=5)
    rows = list(
        bench_ann.study(vectors, queries, label="random", hnsw_m=[8], ef_search=[16, 256], nprobe=[1, 64])
    )
    kinds = [r.index for r in rows]
    assert kinds[0] == "flat" and kinds.count("hnsw") == 2 and kinds.count("ivf") == 2
    assert all(r.recall_at_10 == 1.0 for r in rows if r.index == "flat")
    assert all(r.meets_bar == (r.recall_at_10 >= bench_ann.RECALL_BAR) for r in rows)
    ivf = [r for r in rows if r.index == "ivf"]
    assert ivf[0].params == f"nlist={bench_ann.ivf_nlist(2000)} nprobe=1"
    assert ivf[1].recall_at_10 >= ivf[0].recall_at_10  # probing more lists never finds fewer
    table = bench_ann.format_rows(rows)
    assert table.count("\n") == len(rows) + 2


def test_replicated_vectors_stay_near_their_source():
    base = bench_ann.random_unit_vectors(5, dim=32, seed=6)
    copies = bench_ann.replicate_with_noise(base, 20, noise=0.1, seed=0)
    assert copies.shape == (20, 32) and np.allclose(np.linalg.norm(copies, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(copies * base[np.arange(20) % 5], axis=1) > 0.98)


# ---- the adapter's encoder patch (synthetic builds) -----------------------------------------------------


def test_synthetic_encoder_patch_swaps_and_restores_the_store_encoder():
    import rag.batches

    real = rag.batches.encode_passages
    fake = bench_systems.fake_unit_vectors(0)
    with bench_ours.ours_store_encoder(fake):
        assert rag.batches.encode_passages is fake
        spans = [[(0, 1)], [], [(0, 1)]]
        vectors, sentences = rag.batches.encode_passages(["a", "b", "c"], spans, progress=False)
    assert rag.batches.encode_passages is real
    assert vectors.shape == (3, bench_ann.DIMENSION) and vectors.dtype == np.float32
    assert sentences.shape == (2, bench_ann.DIMENSION)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_child_spec_round_trips(tmp_path):
    spec = bench_systems.ChildSpec("ours", "query", "squad", "w", "d", "q", "wq", "r", threads=1, ask=False)
    bench_systems.write_spec(tmp_path / "spec.json", spec)
    assert bench_systems.read_spec(tmp_path / "spec.json") == spec
