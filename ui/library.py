"""The documents the chat answers from: the source folder, plus files uploaded from the page.

:func:`check_upload` reads and checks uploaded files before anything is written; :class:`Library` stores
them and keeps an index of its documents; :class:`ui.sessions.Sessions` gives each browser session a private
library of its own on top of the shared one, dropped when the session ends or sits idle.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from rag import Index, RagError, ask, open_index
from rag.api import corpus
from rag.build import Kept
from rag.config import UPLOADS, get_settings
from rag.errors import DocumentUnreadable
from rag.readers import SUFFIXES, extract

log = logging.getLogger(__name__)

# Uploads: small files of the kinds the library reads, all checked before anything is written or indexed.
UPLOAD_SUFFIXES = SUFFIXES  # .txt .md .html .htm .pdf
MAX_UPLOAD_BYTES = 1_000_000  # a text or Markdown file; 1 MB is a book
# a PDF or a saved web page carries layout, fonts and images besides its text
MAX_UPLOAD_BYTES_BY_SUFFIX = {".pdf": 10_000_000, ".html": 10_000_000, ".htm": 10_000_000}
MAX_UPLOAD_FILES = 20
# the text of one upload, all its files together: ten books, a few minutes of embedding on a CPU.
# A crafted PDF can expand a few hundred KB into tens of millions of characters.
MAX_UPLOAD_TEXT_CHARS = 5_000_000
MAX_NAME_CHARS = 80

# Private uploads (the default): what one browser session may keep, and how many sessions may keep any.
SESSION_MAX_FILES = 20
SESSION_MAX_BYTES = 20_000_000
MAX_SESSIONS = 50  # sessions holding uploads at once; each has its own index folder
SESSION_IDLE_SECONDS = 3600  # a session's uploads are dropped after this long without a question or upload

EXAMPLE_QUESTION = "Who is the Mayor of Changchun City?"


class UploadRejected(RagError):
    """An upload broke a limit; nothing was written or indexed. The message says which file and why."""


@dataclass(frozen=True)
class Upload:
    """An uploaded file that passed every check: its sanitised name and its bytes, stored as they came."""

    name: str
    data: bytes


def safe_name(name: str) -> str:
    """A file name safe to create in the uploads folder: no folders, no hidden files, plain characters.

    Returns "" when nothing usable is left. The suffix is lower-cased.
    """
    base = unicodedata.normalize("NFKC", re.split(r"[\\/]", name)[-1])
    stem, dot, suffix = base.rpartition(".")
    if not dot or not suffix.isascii() or not suffix.isalnum():
        return ""
    stem = re.sub(r"[^\w\-. ]+", "_", stem)
    stem = re.sub(r"\s+", " ", stem).strip(" ._-")[:MAX_NAME_CHARS].rstrip(" ._-")
    return f"{stem}.{suffix.lower()}" if stem else ""


def big_limit() -> int:
    return max(MAX_UPLOAD_BYTES_BY_SUFFIX.values())


def upload_limit(name: str) -> int:
    """The largest upload accepted for a file of this name, in bytes."""
    return MAX_UPLOAD_BYTES_BY_SUFFIX.get(Path(name).suffix.lower(), MAX_UPLOAD_BYTES)


def kinds(suffixes=UPLOAD_SUFFIXES) -> str:
    *most, last = sorted(suffixes, key=UPLOAD_SUFFIXES.index)
    return f"{', '.join(most)} and {last}" if most else last


def check_upload(paths: list[str | Path] | None) -> list[Upload]:
    """Read and check uploaded files; raise :class:`UploadRejected` listing every problem.

    All or nothing: one bad file rejects the upload, so the index never holds half of it.
    """
    paths = [Path(p) for p in paths or []]
    if not paths:
        raise UploadRejected("no files were uploaded")
    if len(paths) > MAX_UPLOAD_FILES:
        raise UploadRejected(f"{len(paths)} files at once is too many: upload at most {MAX_UPLOAD_FILES}")
    uploads, problems, chars = [], [], 0
    for path in paths:
        shown = path.name
        name = safe_name(path.name)
        if not path.name.lower().endswith(UPLOAD_SUFFIXES):
            problems.append(f"{shown}: only {kinds()} files can be added")
            continue
        if not name:
            problems.append(f"{shown}: the file name has no usable characters; rename it")
            continue
        try:
            size, limit = path.stat().st_size, upload_limit(name)
            if size > limit:
                problems.append(f"{shown}: {size / 1e6:.1f} MB is over the {limit / 1e6:g} MB limit")
                continue
            data = path.read_bytes()
        except OSError as e:
            problems.append(f"{shown}: cannot read it ({e.strerror or e})")
            continue
        try:
            # read it now, as the index will: a file that cannot be read is refused, not stored
            found = extract(data, Path(name).suffix)
        except DocumentUnreadable as e:
            problems.append(f"{shown}: {e}")
            continue
        chars += len(found.text)
        if chars > MAX_UPLOAD_TEXT_CHARS:
            # stop reading: the files still to come could each hold as much again
            problems.append(
                f"together the files hold more than {MAX_UPLOAD_TEXT_CHARS:,} characters of text, the"
                " limit for one upload; add them in smaller groups"
            )
            break
        uploads.append(Upload(name, data))
    if problems:
        raise UploadRejected("nothing was added. " + "; ".join(problems))
    return uploads


@dataclass(frozen=True)
class Quota:
    """What a library may hold in uploads, all its uploads together."""

    files: int = SESSION_MAX_FILES
    bytes: int = SESSION_MAX_BYTES


class Library:
    """The documents the chat answers from: the source folder plus files uploaded from the page.

    Uploads are stored in ``<index_dir>/uploads`` and indexed with ids ``uploads/<name>``. The index
    is rebuilt incrementally after each upload or removal and swapped in whole, under a lock, so a
    question asked meanwhile is answered from the old index or the new one, never from half of one.

    With ``base`` (another library of the same source folder), the index is that library's own until
    something is uploaded here, and is then built in ``index_dir`` by copying what ``base`` already
    holds, so only the uploads are embedded; removing the last upload deletes ``index_dir`` again.
    ``quota`` bounds what may be uploaded here in all.
    """

    def __init__(
        self,
        *,
        source: Path | None = None,
        index_dir: Path | None = None,
        base: Library | None = None,
        quota: Quota | None = None,
    ):
        self._source = Path(source) if source else None
        self._index_dir = Path(index_dir) if index_dir else None
        self._base = base
        self._quota = quota
        self._index: Index | None = None
        self._closed = False
        self._shared_milvus = False  # reads an index in Milvus that builds elsewhere replace
        self._lock = threading.Lock()

    @property
    def source(self) -> Path:
        if self._base is not None:
            return self._base.source
        return self._source or get_settings().source_dir

    @property
    def index_dir(self) -> Path:
        return self._index_dir or get_settings().index_dir

    @property
    def uploads_dir(self) -> Path:
        return self.index_dir / UPLOADS

    @property
    def loaded(self) -> bool:
        """Whether this library's index is open yet (it opens on first use)."""
        return self._index is not None

    @property
    def index(self) -> Index:
        """The current index, loading (or building) it on first use."""
        current = self._index
        if current is not None:
            if self._base is None and self._shared_milvus:
                latest = current.latest()  # a build elsewhere replaced the index in Milvus
                if latest is not current:
                    self._index = current = latest
            return current
        if self._base is not None:
            return self._base.index
        return self.load()

    def load(self, *, progress: bool = False) -> Index:
        """Load the index, building or updating it to match the documents."""
        if self._base is not None:
            return self.index
        with self._lock:
            if self._index is None:
                # pin the folders: a later change of environment must not move the index under us
                self._source, self._index_dir = self.source, self.index_dir
                self._index = self._build(progress=progress, strict=False)
            return self._index

    def warm_up(self) -> None:
        """Answer one question, so the language models are loaded before the first person asks."""
        ask(EXAMPLE_QUESTION, index=self.index)

    def status(self) -> str:
        index = self.index
        docs, passages = index.num_documents, index.num_passages
        mine = len(self.uploads()) if self._base is not None else 0
        yours = f", {mine} of them yours" if mine else ""
        return f"{docs} document{'s' * (docs != 1)}{yours}, {passages} passage{'s' * (passages != 1)} indexed"

    def uploads(self) -> list[str]:
        """The names of the files uploaded here, sorted."""
        folder = self.uploads_dir
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def _build(self, *, progress: bool, strict: bool = True) -> Index:
        # an upload or removal must be indexed or fail (strict); loading may answer from a read-only index
        base = self._base.index if self._base is not None else None
        milvus = get_settings().milvus
        if milvus is not None and base is None:
            # a shared index in Milvus is read as built: python -m index build writes it
            self._shared_milvus = True
            return Index.open(milvus=milvus)
        if milvus is not None:
            # private uploads over it: its documents are copied from it, whatever this machine's folder holds
            kept = [Kept(doc_id, info.sha256) for doc_id, info in base.documents.items()]
            return open_index(
                documents=kept + corpus(None, self.index_dir),
                index_dir=self.index_dir,
                base=base,
                strict=strict,
            )
        return open_index(
            source=self.source, index_dir=self.index_dir, progress=progress, base=base, strict=strict
        )

    def add(self, uploads: list[Upload], *, progress: bool = False) -> str:
        """Store checked uploads and index them; return what happened, for the page.

        A name already taken by a different file gets a numbered name instead of replacing it. If
        indexing fails, the files written are removed again, leaving folder and index as they were.
        """
        self.load()
        with self._lock:
            if self._closed:
                raise UploadRejected("this session has ended; reload the page")
            self._check_quota(uploads)
            fresh = not self.index_dir.exists()
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            written: list[Path] = []
            notes: list[str] = []
            try:
                for up in uploads:
                    path, note = self._store(up)
                    if path is not None:
                        written.append(path)
                    notes.append(note)
                if written:
                    self._index = self._build(progress=progress)
            except BaseException:
                for path in written:
                    path.unlink(missing_ok=True)
                if fresh and self._base is not None:
                    shutil.rmtree(self.index_dir, ignore_errors=True)
                raise
            index = self.index
        documents = index.documents
        ids = [f"{UPLOADS}/{p.name}" for p in written]
        counts = {doc_id: len(documents[doc_id].passages) if doc_id in documents else 0 for doc_id in ids}
        summary = ", ".join(
            f"{doc_id.removeprefix(UPLOADS + '/')} ({n} passage{'s' * (n != 1)})"
            for doc_id, n in counts.items()
        )
        head = f"Added {summary}: ask about {'them' if len(written) > 1 else 'it'} now." if written else ""
        return " ".join(x for x in [head, *notes] if x) or "Nothing new to add."

    def remove(self, name: str, *, progress: bool = False) -> str:
        """Remove an uploaded file and re-index without it; return what happened, for the page."""
        self.load()
        with self._lock:
            # only a name listed here: never a path built from what a page sent
            if name not in self.uploads():
                raise UploadRejected(f"{name!r} is not one of the uploaded documents")
            path = self.uploads_dir / name
            data = path.read_bytes()
            path.unlink()
            try:
                if self._base is not None and not self.uploads():
                    self._index = None  # back to the shared index: this folder is no longer needed
                    shutil.rmtree(self.index_dir, ignore_errors=True)
                else:
                    self._index = self._build(progress=progress)
            except BaseException:
                path.write_bytes(data)
                raise
        return f"Removed {name}: it is no longer cited."

    def close(self) -> None:
        """Forget the uploads of a library made over a ``base``: delete its folder, answer from the base.
        Waits for an upload being indexed here to finish first."""
        if self._base is None:
            raise ValueError("only a library over a base library can be closed")
        with self._lock:
            self._closed = True
            self._index = None
            shutil.rmtree(self.index_dir, ignore_errors=True)

    def _check_quota(self, uploads: list[Upload]) -> None:
        if self._quota is None:
            return
        held = [p.stat().st_size for p in self.uploads_dir.iterdir()] if self.uploads_dir.is_dir() else []
        files, size = len(held) + len(uploads), sum(held) + sum(len(u.data) for u in uploads)
        if files > self._quota.files:
            raise UploadRejected(
                f"you may keep at most {self._quota.files} documents here and have {len(held)};"
                " remove some first"
            )
        if size > self._quota.bytes:
            raise UploadRejected(
                f"your documents would take {size / 1e6:.1f} MB, over the {self._quota.bytes / 1e6:g} MB"
                " you may keep here; remove some first"
            )

    def _store(self, up: Upload) -> tuple[Path | None, str]:
        """Write one upload under a free name; (None, note) when the same file is already there."""
        if safe_name(up.name) != up.name:
            raise ValueError(f"{up.name!r} is not a safe file name: pass uploads through check_upload()")
        stem, suffix = os.path.splitext(up.name)
        for n in range(1, 1000):
            name = up.name if n == 1 else f"{stem}-{n}{suffix}"
            path = self.uploads_dir / name
            try:
                with open(path, "xb") as f:
                    f.write(up.data)
            except FileExistsError:
                if path.read_bytes() == up.data:
                    return None, f"{name} was already added, unchanged."
                continue
            note = f"{up.name} was saved as {name}: a different {up.name} is already there." if n > 1 else ""
            return path, note
        raise UploadRejected(f"too many files named like {up.name}; rename it")


def add_documents(files: list[str] | None, library: Library, *, progress: bool = False) -> str:
    """Check and add uploaded files; the message for the page, whether they were added or refused.
    With ``progress``, indexing a large upload shows progress bars (tqdm; the page shows them too)."""
    try:
        return library.add(check_upload(files), progress=progress)
    except UploadRejected as e:
        return f"⚠️ Upload refused: {e}"
    except RagError as e:
        return f"⚠️ Upload failed, nothing was added: {e}"


def remove_document(name: str | None, library: Library) -> str:
    """Remove an uploaded document; the message for the page."""
    if not name:
        return "⚠️ Choose a document to remove first."
    try:
        return library.remove(name)
    except RagError as e:
        return f"⚠️ Not removed: {e}"
