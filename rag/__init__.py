"""Offline, cited question answering over a folder of documents.

This is the public API of rag::

    from rag import ask
    answer = ask("When was the Northeast Asian Automotive Research Institute founded?")
"""

from .api import ask, open_index, reset_default_index, retrieve
from .errors import IndexMismatch, IndexNotFound, InvalidQuestion, RagError, SourceNotFound
from .retrieval import Index
from .types import Answer, Citation, Document

__all__ = [
    "ask",
    "retrieve",
    "open_index",
    "reset_default_index",
    "Index",
    "Answer",
    "Citation",
    "Document",
    "RagError",
    "InvalidQuestion",
    "SourceNotFound",
    "IndexNotFound",
    "IndexMismatch",
]
