"""Stage 1: read a folder of documents, and find which lines of each are content.

Offsets everywhere refer to the text exactly as read from the file, so a citation can point at
the characters a reader will find when they open it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .errors import SourceNotFound
from .types import Document

log = logging.getLogger("rag")

SUFFIXES = (".txt", ".md")

_ISO_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})[-/.](0?[1-9]|1[0-2])[-/.](0?[1-9]|[12]\d|3[01])(?!\d)")
# A date in a document's first lines ("Updated : 2021-04-06", "date 2023-07-24") is its publication date.
_DATE_SEARCH_CHARS = 400
_LEADING_DATE = re.compile(r"^\s*(?:date|updated|published)?\s*[:：]?\s*" + _ISO_DATE.pattern + r"\s*", re.I)

# Page furniture common on news sites: toolbars, reprint notices, credits, "read more" links, datelines.
# These lines are never content, so chunks stop at them and answers can never quote them.
_FURNITURE = re.compile(
    r"""^\s*[【\[(]?\s*(?:
        .*\bfonts?\s*[:：].*
      | .*\bindicate\s+the\s+source\s+when\s+reprint.*
      | .*\ball\s+rights\s+reserved.*
      | (?:recommended|related|further|more)\s+(?:reading|articles?|stories|news|links?)\s*[:：]?
      | read\s+(?:the\s+)?(?:original|full|more)(?:\s+(?:text|article|story))?
      | (?:people|readers|users)\s+who\s+(?:liked|read|viewed)\b.*
      | (?:editors?|producer|reporter|writer|author|translator|proofreader|photographer|source
         |original\s+title)
        (?:\s+in\s+charge)?\s*[:：].*
      | (?:updated|published|posted)\s*[:：].*
      | date\s+\d{4}-\d{1,2}-\d{1,2}\s*
      | (?:share|print|email|e-mail|comments?|back\s+to\s+top)(?:\s*[|/·]\s*\w+)*
    )\s*[】\])]?\s*$""",
    re.I | re.X,
)


def load_documents(folder: Path) -> list[Document]:
    """Every ``.txt``/``.md`` file below ``folder``, sorted by path.

    Unreadable, empty and non-UTF-8 files are skipped with a warning naming them; the rest load.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceNotFound(f"no folder of documents at {folder} - pass --source DIR or set RAG_SOURCE_DIR")
    docs = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()):
        doc_id = path.relative_to(folder).as_posix()
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as e:
            log.warning("skipped %s: cannot read it (%s)", doc_id, e.strerror or e)
            continue
        except UnicodeDecodeError as e:
            log.warning("skipped %s: not UTF-8 text (byte %d)", doc_id, e.start)
            continue
        if not text.strip():
            log.warning("skipped %s: the file is empty", doc_id)
            continue
        docs.append(make_document(doc_id, text))
    return docs


def make_document(doc_id: str, text: str) -> Document:
    """A document with its title (first non-empty line) and date (first date in its opening lines)."""
    if text.startswith("\ufeff"):
        # keep offsets aligned with the file: blank the byte-order mark rather than dropping it
        text = " " + text[1:]
    return Document(id=doc_id, title=_title(text, doc_id), date=_date(text), text=text)


def _title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = _LEADING_DATE.sub("", line.strip().lstrip("#").strip()).strip()
        if line:
            return line
    return fallback


def _date(text: str) -> str | None:
    m = _ISO_DATE.search(text[:_DATE_SEARCH_CHARS])
    if not m:
        return None
    year, month, day = m.groups()
    return f"{year}-{int(month):02d}-{int(day):02d}"


def is_furniture(line: str) -> bool:
    return bool(_FURNITURE.match(line))


def content_runs(text: str) -> list[tuple[int, int]]:
    """Spans of ``text`` made of content lines only; furniture lines split the text into runs.

    A line that is entirely a leading date ("date 2023-07-24 Title") keeps its words after the date.
    """
    runs: list[tuple[int, int]] = []
    start = end = None
    pos = 0
    for line in text.splitlines(keepends=True):
        line_start, pos = pos, pos + len(line)
        body = line.rstrip("\r\n")
        if not body.strip():
            continue
        if is_furniture(body):
            if start is not None:
                runs.append((start, end))
            start = end = None
            continue
        lead = _LEADING_DATE.match(body) if start is None and not runs else None
        s = line_start + (lead.end() if lead and lead.end() < len(body) else 0)
        s += len(body[s - line_start :]) - len(body[s - line_start :].lstrip())
        if start is None:
            start = s
        end = line_start + len(body.rstrip())
    if start is not None:
        runs.append((start, end))
    return runs
