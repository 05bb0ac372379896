"""Shared fixtures.

Every test runs with the index and source folders pointed at its own ``tmp_path``, so nothing is written
into the checkout and no test sees another's index. The real packaged models are used (they load in
seconds); the index of ``seeds/`` is built once per session for the tests that only read it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import pytest

import rag
from rag.config import PROJECT_ROOT
from rag.documents import make_document
from rag.types import Document

SEEDS = PROJECT_ROOT / "seeds"

# A corpus small enough to reason about by hand: one topic per document, no shared rare words.
TINY_CORPUS = {
    "bakery.txt": (
        "Rosie's Bakery\n\n"
        "Rosie's Bakery on Mill Lane bakes sourdough loaves and cinnamon buns in a wood-fired oven every "
        "morning. The bakery opens at six and sells out of croissants by noon.\n"
    ),
    "library.txt": (
        "The Old Town Library\n\n"
        "The Old Town Library lends books, maps and newspapers to anyone with a reader's card. Its quiet "
        "reading room stays open until nine in the evening.\n"
    ),
    "railway.txt": (
        "The Glen Valley Railway\n\n"
        "The Glen Valley Railway runs steam trains over a stone viaduct between Ashford and Kelby. "
        "Passengers buy tickets at the station booking office before the locomotive departs.\n"
    ),
    "volcano.txt": (
        "Mount Arvel\n\n"
        "Mount Arvel is a volcano whose last eruption sent lava flows down its northern slope. Geologists "
        "monitor the crater for ash and sulphur gas.\n"
    ),
}


@pytest.fixture(scope="session", autouse=True)
def _offline():
    """The models ship inside packages: any attempt to reach a model hub is a bug, so forbid it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(autouse=True)
def _hermetic(tmp_path, monkeypatch):
    """Point the configured folders at this test's tmp_path. The source folder does not exist, so a
    test that reaches the default index without setting it up fails loudly instead of indexing seeds/.
    No language model server is configured."""
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_SOURCE_DIR", str(tmp_path / "docs"))
    # a language model server configured in the developer's shell must not change what tests see
    for name in ("RAG_LLM_BASE_URL", "RAG_LLM_MODEL", "RAG_LLM_API_KEY", "RAG_LLM_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    rag.reset_default_index()
    yield
    rag.reset_default_index()


@pytest.fixture(scope="session")
def seeds_index_dir(tmp_path_factory) -> Path:
    """An index of seeds/, built once per session. Read it only: copy it (``seeds_env``) to change it."""
    out = tmp_path_factory.mktemp("seeds-index")
    rag.open_index(source=SEEDS, index_dir=out, progress=False)
    return out


@pytest.fixture(scope="session")
def seeds_index(seeds_index_dir) -> rag.Index:
    # the index is already up to date, so this only loads it
    return rag.open_index(source=SEEDS, index_dir=seeds_index_dir, progress=False)


@pytest.fixture
def seeds_env(tmp_path, monkeypatch, seeds_index_dir) -> Path:
    """The configured folders as a user would have them: seeds/ and a (private copy of its) index."""
    index_dir = tmp_path / "index"
    shutil.copytree(seeds_index_dir, index_dir)
    monkeypatch.setenv("RAG_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("RAG_SOURCE_DIR", str(SEEDS))
    return index_dir


@pytest.fixture(scope="session")
def tiny_corpus() -> Mapping[str, str]:
    """{file name: text} of TINY_CORPUS, read-only: it is shared by the whole session."""
    return MappingProxyType(TINY_CORPUS)


@pytest.fixture
def tiny_docs(tiny_corpus) -> list[Document]:
    return [make_document(name, text) for name, text in tiny_corpus.items()]


@pytest.fixture
def tiny_source(tmp_path, tiny_corpus) -> Path:
    """TINY_CORPUS written to files in the configured source folder (bytes: no newline translation)."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in tiny_corpus.items():
        (folder / name).write_bytes(text.encode("utf-8"))
    return folder


@pytest.fixture(scope="session")
def make_pdf() -> Callable[[Sequence[str | None]], bytes]:
    """A real PDF (written by fpdf2) with one page per item: its text, or a drawing and no text for None."""
    from fpdf import FPDF

    def make(pages: Sequence[str | None]) -> bytes:
        pdf = FPDF()
        pdf.set_font("Helvetica", size=12)
        for text in pages:
            pdf.add_page()
            if text is None:
                pdf.rect(20, 20, 120, 80, style="F")  # what a scan looks like to a text extractor
            else:
                pdf.multi_cell(0, 8, text=text)
        return bytes(pdf.output())

    return make


@pytest.fixture
def quiet_rag_logger():
    """The command lines turn the "rag" logger up to INFO; put it back after an in-process run."""
    import logging

    logger = logging.getLogger("rag")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture
def fake():
    """A scripted OpenAI-compatible server on 127.0.0.1 (see fake_llm.py), closed after the test."""
    from fake_llm import FakeLLM

    server = FakeLLM()
    yield server
    server.close()
