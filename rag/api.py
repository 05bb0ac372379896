"""The entry points: open an index, retrieve passages, ask a question."""

from __future__ import annotations

import dataclasses
import re
import threading
from pathlib import Path

from . import multilingual
from .answering import answer
from .build import sync
from .config import MAX_QUESTION_CHARS, SESSIONS, UPLOADS, ChunkSettings, MilvusSettings, get_settings
from .documents import SourceFile, read_source, scan_documents
from .errors import InvalidQuestion, SourceNotFound
from .retrieval import Index
from .types import Answer, Citation, Document

_UNENCODABLE = re.compile("[\ud800-\udfff\x00]")

_default: Index | None = None
_default_lock = threading.Lock()


def open_index(
    *,
    source: Path | None = None,
    documents: list[Document | SourceFile] | None = None,
    index_dir: Path | None = None,
    progress: bool = True,
    chunking: ChunkSettings | None = None,
    fusion: str = "convex",
    base: Index | None = None,
    strict: bool = False,
    multilingual: bool | None = None,
    milvus: MilvusSettings | None = None,
) -> Index:
    """Load the index, building it when missing and updating it when documents changed.

    ``documents`` indexes those instead of a folder; with neither, the configured source folder
    (``RAG_SOURCE_DIR``, default ``seeds/``). Only new or changed documents are embedded; with ``base``
    (another index, e.g. of the same folder), documents it already holds are copied from it, not embedded.

    ``strict`` is for builds (``python -m index build``): wait for another build of the same directory
    and raise when the index cannot be updated. Otherwise (``ask()``, the chat) a current index is only
    read - it may be read-only - and when an update cannot be made (another build is writing, the folder
    is read-only, the disk is full) the index in use answers, with a warning.

    ``multilingual`` gives each passage a second vector for questions in other languages than English
    (:mod:`rag.multilingual`); None keeps what the index has, and a new index gets them.

    ``milvus`` keeps the index in Milvus (:class:`rag.config.MilvusSettings`; ``pip install -e
    ".[milvus]"``) instead of ``index_dir``, which then holds only a build's work in progress; with
    neither given, ``RAG_INDEX_URI`` says which.
    """
    settings = get_settings()
    if milvus is None and index_dir is None:
        milvus = settings.milvus  # the configured index: RAG_INDEX_URI when set, else RAG_INDEX_DIR
    index_dir = Path(index_dir) if index_dir else settings.index_dir
    if documents is None:
        folder = Path(source) if source is not None else settings.source_dir
        documents = corpus(folder, index_dir)
        if not documents:
            raise SourceNotFound(f"no .txt, .md, .html, .htm or .pdf documents in {folder}")
    stored = sync(
        documents,
        index_dir,
        chunking or settings.chunk,
        progress=progress,
        read=read_source,
        base=base._stored if base is not None else None,  # the same package's index
        strict=strict,
        multilingual=multilingual,
        milvus=milvus,
    )
    if not stored.documents:
        raise SourceNotFound(f"none of the {len(documents)} documents could be read (see the warnings)")
    return Index(stored, fusion=fusion)


def corpus(source: Path | None, index_dir: Path) -> list[SourceFile]:
    """The files of ``source``, plus any uploaded into ``<index_dir>/uploads`` (by the chat page), whose
    ids are ``uploads/<name>``: every entry point indexes the same set, so none drops the others'.
    Only listed here (name, size, mtime); a build reads just the files that changed. With no ``source``,
    only the uploads."""
    # an index kept inside its source folder (--source X --out X), and what the chat keeps beside it,
    # are not documents of that folder
    index_dir = Path(index_dir)
    files = (
        scan_documents(source, exclude=[index_dir, index_dir / UPLOADS, index_dir / SESSIONS])
        if source is not None
        else []
    )
    uploads = index_dir / UPLOADS
    if uploads.is_dir():
        files += [dataclasses.replace(f, id=f"{UPLOADS}/{f.id}") for f in scan_documents(uploads)]
    return files


def default_index() -> Index:
    """The index of the configured folder, opened once per process: built or updated to match it, or,
    with ``RAG_INDEX_URI``, the index in Milvus as its last build left it (many processes may read one
    index there; only ``python -m index build`` writes it)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Index.open() if get_settings().milvus is not None else open_index()
        else:
            _default = _default.latest()
        return _default


def reset_default_index() -> None:
    """Forget the cached default index (after documents changed, or in tests)."""
    global _default
    with _default_lock:
        _default = None


def _check(question: str) -> str:
    if not isinstance(question, str):
        raise InvalidQuestion(f"the question must be text, not {type(question).__name__}")
    question = clean_text(question)
    if not question.strip():
        raise InvalidQuestion("the question is empty - type a question about the documents")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidQuestion(
            f"the question is {len(question):,} characters long; the limit is {MAX_QUESTION_CHARS:,}"
        )
    return question.strip()


def clean_text(text: str) -> str:
    """``text`` with what no encoder can take replaced by U+FFFD: lone surrogates (from a browser, or
    undecodable bytes of a command line's arguments) and NUL characters."""
    return _UNENCODABLE.sub("\ufffd", text)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"k must be a whole number of passages, not {k!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")


def _clean_history(history: list[dict] | None) -> list[dict] | None:
    if history is None:
        return None
    if not isinstance(history, list):
        raise ValueError(f"history must be a list of messages, not {type(history).__name__}")
    return [{**m, "content": _clean_content(m.get("content"))} if isinstance(m, dict) else m for m in history]


def _clean_content(content):
    """A message's content, a string or a list of ``{"type": "text", "text": ...}`` blocks, cleaned."""
    if isinstance(content, str):
        return clean_text(content)
    if isinstance(content, list):
        return [
            {**b, "text": clean_text(b["text"])}
            if isinstance(b, dict) and isinstance(b.get("text"), str)
            else b
            for b in content
        ]
    return content


def ask(
    question: str, *, history: list[dict] | None = None, k: int = 5, index: Index | None = None
) -> Answer:
    """Answer ``question`` from the documents, with citations (best first).

    ``history`` holds earlier turns as ``{"role", "content"}`` messages, used to resolve follow-ups.
    """
    question = _check(question)
    _check_k(k)
    return answer(question, history=_clean_history(history), k=k, index=index or default_index())


def retrieve(query: str, *, k: int = 5, index: Index | None = None) -> list[Citation]:
    """The ``k`` passages that best match ``query``, best first, with their fused retrieval scores; a query
    in another language than English is matched through the multilingual vectors, when the index has them."""
    query = _check(query)
    _check_k(k)
    index = index or default_index()
    if index.multilingual and multilingual.language(query) != "en":
        return [index.citation(h) for h in index.search_multilingual([query], k=k)]
    return [index.citation(h) for h in index.search(query, k=k)]
