"""The command lines with a language model server: ``python -m rag`` and ``python -m eval --llm``.

The server is the scripted fake of :mod:`fake_llm`; the real one is in test_llm_server.py.
"""

from __future__ import annotations

import json
import re
import socket

import pytest
from fake_llm import Say
from test_cli import MAYOR, run

from eval.__main__ import main as eval_main
from rag.__main__ import main as rag_main
from rag.config import PROJECT_ROOT


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_rag_prints_the_generated_answer_then_the_extract_and_sources(
    fake, seeds_env, capsys, quiet_rag_logger
):
    fake.then(Say("The mayor is Wang Zilian [1][9]."))
    assert rag_main([MAYOR, "--llm-base-url", fake.url, "--llm-model", "m"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The mayor is Wang Zilian [1].\n")
    assert "\nExtracted answer: Wang Zilian [1]\n" in out
    assert "Note: 1 citation mark naming no passage given was removed." in out
    assert "Sources:\n[1] " in out and "003_77923ca0126b27a7.txt" in out
    assert fake.requests[0]["model"] == "m"


def test_rag_falls_back_with_a_note_when_the_server_is_down(seeds_env, capsys, quiet_rag_logger):
    assert rag_main([MAYOR, "--llm-base-url", closed_port_url()]) == 0
    out = capsys.readouterr().out
    assert out.startswith("\nNote: The language model gave no answer (cannot reach http://127.0.0.1:")
    assert "\nWang Zilian.\n" in out and "Sources:" in out


def test_rag_json_holds_the_generated_answer(fake, seeds_env, capsys, quiet_rag_logger):
    fake.then(Say("Wang Zilian [1]."))
    assert rag_main(["--json", MAYOR, "--llm-base-url", fake.url]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["text"] == "Wang Zilian [1]." and result["generated"] and result["grounded"]
    assert result["extracted"]["short_answer"] == "Wang Zilian"


def test_no_llm_keeps_the_extractive_answer(fake, seeds_env, capsys, quiet_rag_logger, monkeypatch):
    monkeypatch.setenv("RAG_LLM_BASE_URL", fake.url)
    assert rag_main([MAYOR, "--no-llm"]) == 0
    assert capsys.readouterr().out.startswith("Wang Zilian.\n") and fake.requests == []


@pytest.mark.slow
def test_rag_reads_the_server_from_the_environment(fake, tmp_path, seeds_env):
    fake.then(Say("The mayor is Wang Zilian [1]."))
    result = run(
        "rag",
        MAYOR,
        cwd=tmp_path,
        RAG_INDEX_DIR=str(seeds_env),
        RAG_SOURCE_DIR=str(PROJECT_ROOT / "seeds"),
        RAG_LLM_BASE_URL=fake.url,
        RAG_LLM_MODEL="env-model",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The mayor is Wang Zilian [1].")
    assert fake.requests[0]["model"] == "env-model" and "Traceback" not in result.stderr


def test_rag_refuses_a_bad_timeout(seeds_env, capsys, quiet_rag_logger, monkeypatch):
    monkeypatch.setenv("RAG_LLM_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("RAG_LLM_TIMEOUT", "never")
    assert rag_main([MAYOR]) == 2
    assert "RAG_LLM_TIMEOUT" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_llm_scores_the_generative_path_alike(fake, seeds_env, capsys, tmp_path, quiet_rag_logger):
    fake.default = Say("The answer is Wang Zilian [1][6].")
    report = tmp_path / "report.json"
    assert (
        eval_main(["--llm", "--llm-base-url", fake.url, "--limit", "6", "--quiet", "--json", str(report)])
        == 0
    )
    out = capsys.readouterr().out
    assert "generative)" in out and "reply holds the gold" in out and "hit@1" in out
    data = json.loads(report.read_text())
    llm = data["summary"]["llm"]
    asked = [i for i in data["items"] if i["asked_model"]]
    assert llm["asked"] == len(asked) > 0
    assert llm["generated"] == llm["grounded"] == len(asked) and llm["fell_back"] == 0
    assert llm["dropped_marks"] == len(asked) and llm["invalid_marks_shown"] == 0
    for item in asked:
        assert item["reply"] == "The answer is Wang Zilian [1]."
        assert "1" not in item["prediction"].split()  # marks never count as answer words
    assert re.search(rf"\ninvalid \[n\] shown +0 \({len(asked)} dropped before showing\)\n", out)


def test_eval_llm_counts_fallbacks(seeds_env, capsys, tmp_path, quiet_rag_logger):
    report = tmp_path / "report.json"
    assert (
        eval_main(
            ["--llm", "--llm-base-url", closed_port_url(), "--limit", "3", "--quiet", "--json", str(report)]
        )
        == 0
    )
    llm = json.loads(report.read_text())["summary"]["llm"]
    assert llm["generated"] == 0 and llm["fell_back"] == llm["asked"]


def test_eval_llm_needs_a_server(seeds_env, capsys):
    assert eval_main(["--llm", "--limit", "1"]) == 2
    assert "RAG_LLM_BASE_URL" in capsys.readouterr().err
