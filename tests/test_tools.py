"""The command-line tools around the library, on small inputs: the reader's scorer, the chat's launcher,
and the helpers of the chat and incremental-build benchmarks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval import bench_incremental
from eval import reader as eval_reader
from ui import bench as ui_bench
from ui.__main__ import main as ui_main

PASSAGE = (
    "The Harbour Museum opened in 1921 in the old customs house of Port Elm. It was founded by Mara Quill, "
    "a ship builder who gave the town her collection of ship models."
)


def squad_file(path, questions):
    qas = [
        {"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": PASSAGE.index(a)}]}
        for i, (q, a) in enumerate(questions)
    ]
    data = {
        "version": "1.1",
        "data": [{"title": "Harbour_Museum", "paragraphs": [{"context": PASSAGE, "qas": qas}]}],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_the_reader_scorer_reads_each_question_with_its_paragraph(tmp_path, capsys):
    data = squad_file(
        tmp_path / "tiny.json",
        [("Who founded the Harbour Museum?", "Mara Quill"), ("When did the Harbour Museum open?", "1921")],
    )
    eval_reader.main(["--data", str(data)])
    figures = json.loads(capsys.readouterr().out)
    assert figures["questions"] == 2
    assert figures["exact_match"] == figures["f1"] == 100.0


def test_the_chat_launcher_refuses_a_bad_server_url_before_loading_anything(tmp_path, capsys):
    assert ui_main(["--source", str(tmp_path / "nowhere"), "--llm-base-url", "not a url"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_the_chat_launcher_says_when_there_are_no_documents(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    assert ui_main(["--source", str(tmp_path / "nowhere")]) == 2
    assert "error:" in capsys.readouterr().err


def test_chat_benchmark_percentiles_match_numpy():
    values = [0.3, 0.1, 0.9, 0.5, 0.7, 0.2]
    for q in (0, 50, 95, 100):
        assert ui_bench.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_incremental_benchmark_writes_one_sentence_per_file(tmp_path):
    data = squad_file(tmp_path / "tiny.json", [("Who founded it?", "Mara Quill")])
    n = bench_incremental.write_corpus(tmp_path / "docs", 5, data=data)
    files = sorted((tmp_path / "docs").rglob("*.txt"))
    assert n == len(files) == 2  # the paragraph has two sentences
    assert (
        files[0].read_text(encoding="utf-8").startswith("Harbour Museum\n\nThe Harbour Museum opened in 1921")
    )
