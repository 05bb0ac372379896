"""Stage 4: building the index on disk (:mod:`rag.store` describes its layout and loads it).

A build embeds new or changed documents in batches, each saved under ``build/`` as soon as it is done,
then writes a whole new generation beside the old one and swaps ``CURRENT`` with ``os.replace``. A build
killed at any point leaves the previous index usable, and the next build starts from the saved batches.
A build deletes only what builds write: generations named ``gen-<id>`` and the batches in ``build/``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from .backend import Store
from .batches import Batches
from .config import INDEX_MARK, SESSIONS, UPLOADS, ChunkSettings, MilvusSettings
from .documents import SourceFile
from .errors import (
    IndexDamaged,
    IndexMismatch,
    IndexNotFound,
    IndexUnavailable,
    IndexUpdateFailed,
    NotAnIndex,
)
from .generation import Planned, write_generation
from .store import StoredIndex, load, sha256
from .types import Document

log = logging.getLogger("rag")


def sync(
    items: Sequence[Document | SourceFile | Kept],
    index_dir: Path,
    chunk: ChunkSettings,
    *,
    progress: bool = True,
    read=None,
    base: StoredIndex | None = None,
    strict: bool = True,
    multilingual: bool | None = None,
    milvus: MilvusSettings | None = None,
) -> Store:
    """Make the index at ``index_dir`` match ``items``, embedding only new or changed documents.

    ``items`` are documents, or files (read with ``read(file) -> Document``, which raises
    :class:`DocumentUnreadable` for a file it cannot read, only when their size, mtime and then content
    hash say they changed). A file that cannot be read is skipped with a warning, once: the manifest
    remembers it until it changes. Resumes the batches a killed build left behind. Documents that
    ``base`` (another index) holds unchanged are copied from it when this directory has no index yet.

    A current index is only read, so a read-only one opens. An update needs the directory's lock: with
    ``strict`` a build waits for another one and raises :class:`IndexUpdateFailed` when it cannot write;
    without it, when an index is in use, a busy lock or a failed write leaves that index answering,
    with a warning.

    ``multilingual``: whether passages get a second, multilingual vector (:mod:`rag.multilingual`) for
    questions in other languages. None keeps what the index has (a new index gets them); a change
    rebuilds the index.

    ``milvus``: keep the index in Milvus (:mod:`rag.milvus`) instead of ``index_dir``, which then holds
    only the build's work in progress and its lock.
    """
    index_dir = Path(index_dir)
    target = Folder(index_dir) if milvus is None else _milvus_target(milvus, index_dir)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("document ids must be unique")
    old = _try_load(target, chunk, multilingual)
    want = multilingual if multilingual is not None else (old is None or old.has_multilingual)
    if base is not None and base.has_multilingual != want:
        base = None  # nothing to copy from an index built the other way
    plan = _plan(items, old) if old is not None else None
    if old is not None and _current(target, old, plan):
        return old
    try:
        _claim(index_dir)
        with _lock(index_dir, wait=strict or old is None):
            if target.current() != (target.name_of(old) if old is not None else None):
                # another build finished while this one waited: plan against what it wrote
                old = _try_load(target, chunk, want, quiet=True)
                plan = _plan(items, old) if old is not None else None
                if old is not None and _current(target, old, plan):
                    return old
            return _update(
                items, target, chunk, old, plan, base, read=read, progress=progress, multilingual=want
            )
    except _Busy:
        log.warning("another build is updating %s; answering from the index in use meanwhile", index_dir)
        return old
    except (OSError, *target.errors) as e:
        problem = _write_problem(index_dir, e) if isinstance(e, OSError) else target.problem(e)
        if strict or old is None:
            raise IndexUpdateFailed(f"{problem} - the index in use, if any, is unchanged") from e
        log.warning("%s; answering from the index in use, which misses the latest changes", problem)
        return old


class Kept(NamedTuple):
    """A document to copy as it is from the index a build copies from (``base``), known by its id and
    content hash: how a private index over a shared one in Milvus lists the shared documents, whose
    files are not on this machine."""

    id: str
    sha256: str


class Folder:
    """Where a build writes, and readers open, an index of local files (:mod:`rag.store`)."""

    errors: tuple[type[Exception], ...] = ()  # besides OSError, what a failed write raises

    def __init__(self, path: Path):
        self.path = path
        self.work_dir = path  # build/ and LOCK

    def current(self) -> str | None:
        """The name of the generation in use, as ``CURRENT`` says now; None when there is none."""
        try:
            return (self.path / "CURRENT").read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            return None

    @staticmethod
    def name_of(index: StoredIndex) -> str:
        return index.path.name

    def load(self, chunk: ChunkSettings, *, verify: bool = True) -> StoredIndex:
        return load(self.path, chunk, verify=verify)

    def write(self, chunk, plan, old, work, *, skipped, progress) -> None:
        write_generation(self.path, chunk, plan, old, work, skipped=skipped, progress=progress)

    @staticmethod
    def restamp(old: StoredIndex) -> None:
        tmp = old.path / ".manifest.json.tmp"
        try:
            tmp.write_text(json.dumps(old.manifest, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, old.path / "manifest.json")
        except OSError as e:
            log.debug("could not update %s: %s", old.path / "manifest.json", e)
            with contextlib.suppress(OSError):
                tmp.unlink()


def _milvus_target(settings: MilvusSettings, work_dir: Path):
    from .milvus_target import MilvusTarget

    return MilvusTarget(settings, work_dir)


def _try_load(
    target, chunk: ChunkSettings, multilingual: bool | None, *, quiet: bool = False
) -> Store | None:
    """The index in use, or None when there is none or it must be rebuilt (saying why): built with
    other settings, damaged, or with(out) the multilingual vectors asked for (None: as it was built)."""
    try:
        old = target.load(chunk)
    except IndexUnavailable:
        raise
    except (IndexMismatch, IndexDamaged) as e:
        if not quiet:
            log.warning("%s; rebuilding it from the documents", str(e).split(" - ")[0])
        return None
    except IndexNotFound:
        return None
    if multilingual is None and "multilingual" not in old.manifest:
        multilingual = True  # built before indexes had them: a new index has them
    if multilingual is not None and old.has_multilingual != multilingual:
        if not quiet:
            has = "has no" if multilingual else "has"
            log.warning(
                "the index at %s %s multilingual vectors; rebuilding it from the documents", old.location, has
            )
        return None
    return old


def _current(target, old: Store, plan: list[Planned]) -> bool:
    """Whether ``old`` holds exactly the planned items, unchanged, and knows the ones it skipped as
    unreadable. Touched but unchanged files get their new size and mtime recorded (when the index is
    writable), so the next start does not hash them again."""
    have = old.manifest["documents"]
    if any(not (p.same or p.known_bad) for p in plan) or len(have) != sum(p.same for p in plan):
        return False
    if any(p.stamp and p.stamp != {k: have[p.id].get(k) for k in STAMP} for p in plan if p.same):
        _restamp(target, old, plan)
    return True


def _update(
    items, target, chunk: ChunkSettings, old, plan, base, *, read, progress: bool, multilingual: bool
) -> Store:
    """Embed what changed and write a new generation; under the directory's lock. ``plan`` is
    :func:`_plan` against ``old``; without an old index, documents are planned against ``base``."""
    copy_from = old if old is not None else base
    if old is None:
        plan = _plan(items, base)
    have = copy_from.manifest["documents"] if copy_from is not None else {}
    skipped = copy_from.manifest.get("skipped", {}) if copy_from is not None else {}
    work = Batches(target.work_dir, chunk, multilingual=multilingual)
    todo = [(item, p.sha) for item, p in zip(items, plan, strict=True) if not (p.same or p.known_bad)]
    todo = [(item, sha) for item, sha in todo if (item.id, sha) not in work.done]
    log.info(
        "indexing %d documents: %d unchanged, %d resumed from an interrupted build, %d to embed, %d removed",
        len(items),
        sum(p.same for p in plan),
        sum(1 for p in plan if not p.same and (p.id, p.sha) in work.done),
        len(todo),
        len(set(have) - set(p.id for p in plan)) if old is not None else 0,
    )
    try:
        shas, bad = work.run(todo, read, progress=progress)
        plan = [p._replace(sha=shas.get(p.id, p.sha)) for p in plan]
        skipped = {p.id: skipped[p.id] for p in plan if p.known_bad} | bad
        nothing_new = all(p.same or p.known_bad or p.id in bad for p in plan)
        if old is not None and nothing_new and len(have) == sum(p.same for p in plan):
            _restamp(target, old, plan, skipped=skipped)  # only newly unreadable files: nothing to re-write
            work.clear()
            return old
        target.write(chunk, plan, copy_from, work, skipped=skipped, progress=progress)
    except OSError as e:
        if _disk_full(e):
            work.clear()  # its batches would keep the disk full; the next build starts over
        raise
    work.clear()
    return target.load(chunk, verify=False)


def _disk_full(e: OSError) -> bool:
    # numpy reports a short write as "N requested and M written", without an errno
    return e.errno in (errno.ENOSPC, errno.EDQUOT) or bool(re.search(r"requested and \d+ written", str(e)))


def _write_problem(index_dir: Path, e: OSError) -> str:
    if _disk_full(e):
        return (
            f"cannot write the index at {index_dir}: the disk is full (no space left on device); "
            "free some space and build again"
        )
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write the index at {index_dir}: {e.strerror or e} (the folder is read-only for us)"
    return f"cannot write the index at {index_dir}: {e.strerror or e}"


STAMP = ("size", "mtime_ns")


def _plan(items, index: Store | None) -> list[Planned]:
    """What to do with each item, given the index it would be copied from (None: embed everything)."""
    have = index.manifest["documents"] if index is not None else {}
    skipped = index.manifest.get("skipped", {}) if index is not None else {}
    out: list[Planned] = []
    for item in items:
        meta = have.get(item.id)
        if isinstance(item, Kept):
            if not meta or meta["sha256"] != item.sha256:
                raise IndexUpdateFailed(f"{item.id} is no longer in the index it was to be copied from")
            out.append(Planned(item.id, item.sha256, True, None))
            continue
        if isinstance(item, Document):
            sha = sha256(item.text)
            out.append(Planned(item.id, sha, bool(meta) and meta["sha256"] == sha, None))
            continue
        stamp = {"size": item.size, "mtime_ns": item.mtime_ns}
        if meta and meta.get("size") == item.size and meta.get("mtime_ns") == item.mtime_ns:
            out.append(Planned(item.id, meta["sha256"], True, stamp))
            continue
        bad = skipped.get(item.id)
        if bad and {k: bad.get(k) for k in STAMP} == stamp:
            out.append(Planned(item.id, None, False, stamp, known_bad=True))
            continue
        try:
            sha = hashlib.sha256(item.path.read_bytes()).hexdigest()
        except OSError:
            sha = None  # reported by the reader, which is what skips it
        out.append(Planned(item.id, sha, bool(meta) and meta["sha256"] == sha, stamp))
    return out


def _restamp(target, old: Store, plan: list[Planned], *, skipped: dict | None = None) -> None:
    """Record new sizes/mtimes of unchanged files (and files newly found unreadable) in the manifest in
    use, so the next start neither hashes nor reads them again. Best effort: a read-only index stays as
    it is, and only costs that work again next time."""
    for doc_id, _, same, stamp, _ in plan:
        if stamp and same:
            old.manifest["documents"][doc_id].update(stamp)
    if skipped is not None:
        old.manifest["skipped"] = skipped
    target.restamp(old)


class _Busy(Exception):
    """Another build holds the directory's lock, and the caller would rather not wait."""


# What a folder must hold to be taken for an index: the mark INDEX_MARK every build leaves (older
# indexes: CURRENT).
MARK_TEXT = (
    "This folder holds an index written by rag (python -m index build). Do not keep other files here.\n"
)


KEPT_BESIDE = frozenset({UPLOADS, SESSIONS})  # what the chat keeps in an index folder


def _claim(index_dir: Path) -> None:
    """Make ``index_dir`` an index folder: new, empty, or already one. A folder holding anything else is
    refused, since a build deletes what it wrote there (old generations, its ``build/`` batches)."""
    if index_dir.exists() and not index_dir.is_dir():
        raise NotAnIndex(f"{index_dir} is a file, not a folder: give the index a folder of its own")
    index_dir.mkdir(parents=True, exist_ok=True)
    if (index_dir / INDEX_MARK).is_file():
        return
    entries = set(os.listdir(index_dir))
    legacy = "CURRENT" in entries or (index_dir / "build" / "settings.json").is_file() and "LOCK" in entries
    others = entries - KEPT_BESIDE - {"LOCK"}  # the lock alone: a build that was waited for never began
    if not legacy and others:
        shown = ", ".join(sorted(others)[:5])
        raise NotAnIndex(
            f"{index_dir} is not empty and holds no index ({shown}...): an index is written only into a "
            "new or empty folder, or one that holds an index - choose another with --out"
        )
    (index_dir / INDEX_MARK).write_text(MARK_TEXT, encoding="utf-8")


@contextlib.contextmanager
def _lock(index_dir: Path, *, wait: bool):
    """One build at a time per index directory; a second one waits (with ``wait``; else raises _Busy),
    then finds the work done."""
    with (index_dir / "LOCK").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise _Busy from None
            log.warning("another build is writing %s; waiting for it to finish", index_dir)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
