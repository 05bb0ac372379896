"""The command lines, as a user runs them (subprocesses), plus their error translation in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from index.__main__ import main as index_main
from rag.__main__ import main as rag_main
from rag.config import PROJECT_ROOT

SEEDS = PROJECT_ROOT / "seeds"
MAYOR = "Who is the Mayor of Changchun City?"


def run(*args: str, cwd, **env: str) -> subprocess.CompletedProcess:
    # run from tmp_path, not the checkout: nothing may depend on, or write into, the working directory
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_rag_answers_a_question_with_its_source(tmp_path, seeds_env):
    # seeds_env: RAG_INDEX_DIR is a tmp copy of the session's seeds index, so the command only loads it
    result = run("rag", MAYOR, cwd=tmp_path, RAG_INDEX_DIR=str(seeds_env), RAG_SOURCE_DIR=str(SEEDS))
    assert result.returncode == 0, result.stderr
    assert "Wang Zilian" in result.stdout
    assert "003_77923ca0126b27a7.txt" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_index_build_writes_an_index(tmp_path, tiny_source):
    out = tmp_path / "built"
    result = run("index", "build", "--source", str(tiny_source), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 documents" in result.stdout
    name = (out / "CURRENT").read_text(encoding="utf-8").strip()
    manifest = json.loads((out / name / "manifest.json").read_text(encoding="utf-8"))
    assert sorted(manifest["documents"]) == sorted(p.name for p in tiny_source.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["built", "docs"]  # nothing else written


@pytest.mark.slow
def test_index_build_reads_every_format_in_sub_folders_and_names_what_it_skips(tmp_path, make_pdf):
    source = tmp_path / "corpus"
    (source / "web").mkdir(parents=True)
    (source / "reports" / "2024").mkdir(parents=True)
    (source / ".git").mkdir()
    (source / "notes.md").write_text("# Notes\n\nThe harbour bridge reopened in May.\n", encoding="utf-8")
    (source / "web" / "bakery.html").write_text(
        "<title>Quill Bakery</title><script>track()</script><p>The Quill Bakery sells rye bread.</p>",
        encoding="utf-8",
    )
    (source / "reports" / "2024" / "annual.pdf").write_bytes(
        make_pdf(["Annual Report", "The viaduct carried 40,000 cars a day."])
    )
    (source / "reports" / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type")
    (source / ".git" / "HEAD.txt").write_text("ref: refs/heads/main\n", encoding="utf-8")
    out = tmp_path / "built"
    result = run("index", "build", "--source", str(source), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 documents" in result.stdout
    assert "skipped reports/broken.pdf: not a readable PDF" in result.stderr
    assert "Traceback" not in result.stderr
    name = (out / "CURRENT").read_text(encoding="utf-8").strip()
    manifest = json.loads((out / name / "manifest.json").read_text(encoding="utf-8"))
    assert sorted(manifest["documents"]) == ["notes.md", "reports/2024/annual.pdf", "web/bakery.html"]


def test_index_build_of_a_missing_folder_is_a_one_line_error(tmp_path):
    result = run("index", "build", "--source", "/nonexistent", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and "/nonexistent" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_rag_refuses_an_empty_question(tmp_path):
    result = run("rag", "", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: the question is empty - type a question about the documents\n"
    assert result.stdout == ""


def test_rag_json_output_is_the_answer(seeds_env, capsys, quiet_rag_logger):
    assert rag_main(["--json", "-k", "3", MAYOR]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["abstained"] is False
    assert answer["short_answer"] == "Wang Zilian"
    assert 1 <= len(answer["citations"]) <= 3
    first = answer["citations"][0]
    assert first["source"] == "003_77923ca0126b27a7.txt"
    assert first["text"][first["answer_start"] : first["answer_end"]] == "Wang Zilian"
    assert (
        answer["text"]
        == "Wang Zilian.\n\nWang Zilian, Mayor of Changchun City, presided over the conference. [1]"
    )
    assert answer["marks"] == [1] and answer["support"] in answer["text"]


def test_rag_without_an_index_or_documents_explains(tmp_path, capsys, quiet_rag_logger):
    assert rag_main([MAYOR]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no folder of documents at ") and "RAG_SOURCE_DIR" in err


def test_index_info_of_a_missing_index_says_how_to_build(tmp_path, capsys, quiet_rag_logger):
    assert index_main(["info", "--out", str(tmp_path / "nothing")]) == 2
    assert "python -m index build" in capsys.readouterr().err


def test_index_info_prints_the_manifest(seeds_env, capsys, quiet_rag_logger):
    assert index_main(["info", "--out", str(seeds_env)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == "5 documents"
    assert info["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_index_build_into_an_unwritable_place_is_a_one_line_error(tmp_path, tiny_source, quiet_rag_logger):
    out = tmp_path / "a-file"
    out.write_text("not a directory", encoding="utf-8")
    assert index_main(["build", "--source", str(tiny_source), "--out", str(out)]) == 2


@pytest.mark.slow
def test_a_killed_build_resumes_where_it_stopped(tmp_path):
    import signal
    import time

    source = tmp_path / "docs"
    source.mkdir()
    words = "harbour lantern orchard quarry meadow foundry ferry chapel granary mill".split()
    for n in range(600):  # one short passage each: 3 batches of 256 or fewer
        a, b, c = words[n % 10], words[n // 10 % 10], words[n // 100 % 10]
        text = f"Note {n}\n\nThe {a} by the {b} was repaired in year {1000 + n} near the {c}.\n"
        (source / f"note-{n:04d}.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "index"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "index", "build", "--source", str(source), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list((out / "build").glob("batch-*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.communicate()
    saved = len(list((out / "build").glob("batch-*.json")))
    assert saved >= 1
    assert not (out / "CURRENT").exists()  # nothing was half-published

    result = run("index", "build", "--source", str(source), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "600 documents" in result.stdout
    resumed = int(result.stderr.split(" resumed from an interrupted build")[0].rsplit(", ", 1)[-1])
    assert resumed == 256 * saved  # what the saved batches hold is not embedded again
    assert not (out / "build").exists()
