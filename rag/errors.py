"""The library's named errors. Each message says what to do about it."""


class RagError(Exception):
    """Base class for every error this library raises on purpose."""


class InvalidQuestion(RagError, ValueError):
    """The question is empty, blank or too long."""


class SourceNotFound(RagError):
    """The folder of documents does not exist or holds no readable document."""


class DocumentUnreadable(RagError):
    """One file could not be turned into text; the message says why. Builds skip it and go on."""


class IndexNotFound(RagError):
    """No usable index at the given place."""


class IndexMismatch(RagError):
    """The index on disk was built with another model, format or chunker settings."""


class LLMUnavailable(RagError):
    """The language model server could not give an answer; the message says why. The extracted answer
    is shown instead."""


class IndexDamaged(IndexNotFound):
    """A file of the index does not match the checksum its manifest recorded; the message names it."""


class IndexUnavailable(IndexNotFound):
    """The index's server (Milvus) could not be reached, or its client is not installed."""


class NotAnIndex(RagError):
    """The folder given for an index holds other files: an index is never written among them."""


class IndexUpdateFailed(RagError):
    """The index could not be written (disk full, read-only folder...); the one in use, if any, is
    unchanged. The message says why."""
