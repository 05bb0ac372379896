"""Stage 1: find the documents in a folder, read them, and find which lines of each are content.

Scanning (:func:`scan_documents`) only lists and stats files, so an incremental build can tell what
changed without parsing anything; :func:`read_document` reads one (see :mod:`rag.readers`).

Offsets everywhere refer to a document's ``text``. For ``.txt`` and ``.md`` that is the file exactly as
read, so a citation points at the characters a reader finds on opening it. For HTML and PDF it is the
extracted text (the page's visible text; the PDF's text layer, pages joined by a blank line), and a
PDF's ``Document.pages`` maps offsets back to page numbers.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .config import INDEX_MARK, SESSIONS, UPLOADS
from .errors import DocumentUnreadable, SourceNotFound
from .readers import SUFFIXES, read_text
from .types import Document

# How documents are read and cut into title, date and body. An index records it, and one built by another
# version is rebuilt: bump it whenever a change alters what a document yields (2: a one-line document
# is kept, its only line being both its title and its text).
READING_VERSION = 2

log = logging.getLogger("rag")

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


@dataclass(frozen=True)
class SourceFile:
    """A document file found by a scan, not yet read: its id, where it is, and what stat said."""

    id: str  # the path relative to the scanned folder, with "/" separators
    path: Path
    size: int
    mtime_ns: int


def scan_documents(folder: Path, *, exclude: Iterable[Path] = ()) -> list[SourceFile]:
    """Every file below ``folder`` with a supported suffix (any case), sorted by id; reads none of them.

    Hidden files and hidden folders (``.git``, ``.venv``...) are left out, and the walk does not enter
    hidden folders at all, however large, nor the folders in ``exclude``, nor any folder that holds an
    index (marked by ``RAG-INDEX``), nor, in a source folder that is itself an index folder, the chat's
    uploads and sessions kept there. Linked folders are not followed (as ``Path.rglob`` does not). A
    linked file is read only when it resolves to a file inside ``folder``: nothing outside the folder is
    ever read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceNotFound(f"no folder of documents at {folder} - pass --source DIR or set RAG_SOURCE_DIR")
    root = folder.resolve()
    skip = {Path(p).resolve() for p in exclude} - {root}
    if (root / INDEX_MARK).is_file():
        skip |= {root / UPLOADS, root / SESSIONS}
    found = []

    def unlisted(e: OSError) -> None:  # a sub-folder we may not list: say so, and scan the rest
        where = Path(e.filename).relative_to(folder).as_posix() if e.filename else folder
        log.warning("skipped %s: cannot list it (%s)", where, e.strerror or e)

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unlisted):
        dirnames[:] = [
            d
            for d in dirnames
            if not d.startswith(".")
            and Path(dirpath, d).resolve() not in skip
            and not Path(dirpath, d, INDEX_MARK).is_file()
        ]
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in SUFFIXES:
                continue
            path = Path(dirpath, name)
            doc_id = path.relative_to(folder).as_posix()
            try:
                real = path.resolve(strict=True)
                st = real.stat()
            except (OSError, RuntimeError) as e:  # vanished since listed, a dangling or looping link
                log.warning("skipped %s: cannot read it (%s)", doc_id, getattr(e, "strerror", None) or e)
                continue
            if not real.is_relative_to(root) or any(real.is_relative_to(s) for s in skip):
                log.warning("skipped %s: it links to a file outside %s, which is never read", doc_id, folder)
                continue
            if stat.S_ISREG(st.st_mode):
                # the resolved path: what is read later is the file checked here, not where a link points then
                found.append(SourceFile(doc_id, real, st.st_size, st.st_mtime_ns))
    return sorted(found, key=lambda f: f.id)


def read_document(f: SourceFile) -> Document | None:
    """The document in ``f``; None, with a warning naming the file and why, when it cannot be read."""
    try:
        return read_source(f)
    except DocumentUnreadable as e:
        log.warning("skipped %s: %s", f.id, e)
        return None


def read_source(f: SourceFile) -> Document:
    """The document in ``f``; raises :class:`DocumentUnreadable` saying why when it cannot be read."""
    text, pages = read_text(f.path)
    return make_document(f.id, text, pages=pages)


def load_documents(folder: Path) -> list[Document]:
    """Every readable document below ``folder`` (see :func:`scan_documents`), sorted by id.

    Unreadable, empty and badly encoded files are skipped with a warning naming them; the rest load.
    """
    return [doc for f in scan_documents(folder) if (doc := read_document(f)) is not None]


def make_document(doc_id: str, text: str, *, pages: tuple[int, ...] = ()) -> Document:
    """A document with its title (first non-empty line) and date (first date in its opening lines)."""
    if text.startswith("\ufeff"):
        # keep offsets aligned with the file: blank the byte-order mark rather than dropping it
        text = " " + text[1:]
    return Document(id=doc_id, title=_title(text, doc_id), date=_date(text), text=text, pages=pages)


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
