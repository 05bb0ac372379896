"""Offline, cited question answering over a folder of documents.

This is the public API of rag::

    from rag import ask
    answer = ask("Who is the Mayor of Changchun City?")
"""

from .api import ask, open_index, reset_default_index, retrieve
from .config import LLMSettings, MilvusSettings
from .errors import (
    DocumentUnreadable,
    IndexDamaged,
    IndexMismatch,
    IndexNotFound,
    IndexUnavailable,
    IndexUpdateFailed,
    InvalidQuestion,
    LLMUnavailable,
    NotAnIndex,
    RagError,
    SourceNotFound,
)
from .generate import Generation, ask_stream, generate_answer
from .retrieval import Index
from .types import Answer, Citation, Document, GeneratedAnswer

__all__ = [
    "ask",
    "ask_stream",
    "generate_answer",
    "retrieve",
    "open_index",
    "reset_default_index",
    "Index",
    "Answer",
    "Citation",
    "Document",
    "Generation",
    "GeneratedAnswer",
    "LLMSettings",
    "MilvusSettings",
    "RagError",
    "InvalidQuestion",
    "SourceNotFound",
    "IndexNotFound",
    "IndexMismatch",
    "IndexDamaged",
    "IndexUpdateFailed",
    "IndexUnavailable",
    "NotAnIndex",
    "DocumentUnreadable",
    "LLMUnavailable",
]
