"""The entry points: open an index, retrieve passages, ask a question."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from .answering import answer
from .config import MAX_QUESTION_CHARS, ChunkSettings, get_settings
from .documents import SourceFile, read_document, scan_documents
from .errors import InvalidQuestion, SourceNotFound
from .retrieval import Index
from .store import sync
from .types import Answer, Citation, Document

UPLOADS = "uploads"  # folder under the index directory for documents added from the chat page

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
) -> Index:
    """Load the index, building it when missing and updating it when documents changed.

    ``documents`` indexes those instead of a folder; with neither, the configured source folder
    (``RAG_SOURCE_DIR``, default ``seeds/``). Only new or changed documents are embedded.
    """
    settings = get_settings()
    index_dir = Path(index_dir) if index_dir else settings.index_dir
    if documents is None:
        folder = Path(source) if source is not None else settings.source_dir
        documents = corpus(folder, index_dir)
        if not documents:
            raise SourceNotFound(f"no .txt, .md, .html, .htm or .pdf documents in {folder}")
    stored = sync(documents, index_dir, chunking or settings.chunk, progress=progress, read=read_document)
    if not stored.manifest["documents"]:
        raise SourceNotFound(f"none of the {len(documents)} documents could be read (see the warnings)")
    return Index(stored, fusion=fusion)


def corpus(source: Path, index_dir: Path) -> list[SourceFile]:
    """The files of ``source``, plus any uploaded into ``<index_dir>/uploads`` (by the chat page), whose
    ids are ``uploads/<name>``: every entry point indexes the same set, so none drops the others'.
    Only listed here (name, size, mtime); a build reads just the files that changed."""
    files = scan_documents(source)
    uploads = Path(index_dir) / UPLOADS
    if uploads.is_dir():
        files += [dataclasses.replace(f, id=f"{UPLOADS}/{f.id}") for f in scan_documents(uploads)]
    return files


def default_index() -> Index:
    """The index of the configured folder, opened once per process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = open_index()
        return _default


def reset_default_index() -> None:
    """Forget the cached default index (after documents changed, or in tests)."""
    global _default
    with _default_lock:
        _default = None


def _check(question: str) -> str:
    if not isinstance(question, str):
        raise InvalidQuestion(f"the question must be text, not {type(question).__name__}")
    if not question.strip():
        raise InvalidQuestion("the question is empty - type a question about the documents")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidQuestion(
            f"the question is {len(question):,} characters long; the limit is {MAX_QUESTION_CHARS:,}"
        )
    return question.strip()


def ask(
    question: str, *, history: list[dict] | None = None, k: int = 5, index: Index | None = None
) -> Answer:
    """Answer ``question`` from the documents, with citations (best first).

    ``history`` holds earlier turns as ``{"role", "content"}`` messages, used to resolve follow-ups.
    """
    question = _check(question)
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    return answer(question, history=history, k=k, index=index or default_index())


def retrieve(query: str, *, k: int = 5, index: Index | None = None) -> list[Citation]:
    """The ``k`` passages that best match ``query``, best first, with their fused retrieval scores."""
    query = _check(query)
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    index = index or default_index()
    return [index.citation(h) for h in index.search(query, k=k)]
