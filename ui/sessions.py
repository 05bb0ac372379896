"""Each browser session's own documents: a private :class:`ui.library.Library` on top of the shared one,
dropped when the session ends or sits idle."""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from pathlib import Path

from rag import Index
from rag.config import SESSIONS

from .library import MAX_SESSIONS, SESSION_IDLE_SECONDS, Library, Quota, UploadRejected

log = logging.getLogger(__name__)


class Sessions:
    """The private libraries of browser sessions, over one shared library.

    A session is known by a key (Gradio's session hash). It answers from the shared library until it
    uploads something; then it gets a library of its own in ``<index_dir>/sessions/<random name>``
    holding the shared documents plus its uploads. That library is dropped (its folder deleted) by
    :meth:`drop` when the session ends, or by :meth:`expire` after ``idle_seconds`` without use. At
    most ``max_sessions`` sessions hold uploads at once; one more is refused until one ends.
    """

    def __init__(
        self,
        library: Library,
        *,
        max_sessions: int = MAX_SESSIONS,
        idle_seconds: float = SESSION_IDLE_SECONDS,
        quota: Quota | None = None,
    ):
        if max_sessions < 1 or idle_seconds <= 0:
            raise ValueError("max_sessions must be at least 1 and idle_seconds positive")
        self.library = library
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self.quota = quota or Quota()
        self._live: dict[str, tuple[Library, float]] = {}  # key: (library, last used, monotonic)
        self._lock = threading.Lock()
        self._cleared = False
        self._reaper: threading.Thread | None = None

    @property
    def folder(self) -> Path:
        return self.library.index_dir / SESSIONS

    def index(self, key: str | None) -> Index:
        """The index a session's question is answered from: its own, or the shared one."""
        return self.get(key).index

    def get(self, key: str | None) -> Library:
        """The session's library: its own once it uploaded something, else the shared one. Counts as
        use. Only a dictionary look-up: questions never wait here for a session being dropped."""
        with self._lock:
            entry = self._live.get(key or "")
            if entry is None:
                return self.library
            self._live[key] = (entry[0], time.monotonic())
            return entry[0]

    def own(self, key: str | None) -> Library:
        """The session's own library, to upload into: made (without a folder yet) on first use."""
        if not key:
            raise UploadRejected("no browser session: reload the page")
        self.expire()
        with self._lock:
            self._clear_once()
            entry = self._live.get(key)
            lib = entry[0] if entry is not None else None
            if lib is None or not lib.index_dir.exists():
                holding = sum(1 for other, _ in self._live.values() if other.index_dir.exists())
                if holding >= self.max_sessions:
                    raise UploadRejected(
                        f"{self.max_sessions} visitors already have documents of their own on this server,"
                        " the most it keeps; try again later (a visitor's documents are dropped"
                        f" {self.idle_seconds / 60:g} minutes after their last question)"
                    )
            if lib is None:
                folder = self.folder / secrets.token_hex(8)  # not the key: a client chooses that
                lib = Library(index_dir=folder, base=self.library, quota=self.quota)
                self._start_reaper()
            self._live[key] = (lib, time.monotonic())
            return lib

    def drop(self, key: str | None) -> None:
        """End a session: delete its uploads and index."""
        with self._lock:
            entry = self._live.pop(key or "", None)
        if entry is not None:
            entry[0].close()

    def expire(self, now: float | None = None) -> list[str]:
        """Drop the sessions unused for ``idle_seconds``; return their keys."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [k for k, (_, used) in self._live.items() if now - used > self.idle_seconds]
            dropped = [self._live.pop(k)[0] for k in old]
        for lib in dropped:
            lib.close()
        return old

    def clear(self) -> None:
        """Drop every session and delete the folders any earlier server left behind."""
        with self._lock:
            dropped = [lib for lib, _ in self._live.values()]
            self._live.clear()
            self._cleared = False
            self._clear_once()
        for lib in dropped:
            lib.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)

    def _clear_once(self) -> None:
        # at the first upload since the server started, no session folder is ours: an earlier server
        # (stopped, or killed) left them behind
        if not self._cleared:
            self._cleared = True
            if self.folder.is_dir():
                log.info("removing %s: session folders of an earlier server", self.folder)
                shutil.rmtree(self.folder, ignore_errors=True)

    def _start_reaper(self) -> None:
        # idle sessions are dropped in the background: a question never waits for a folder's deletion
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap, name="ui-sessions", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        while True:
            time.sleep(min(60.0, self.idle_seconds))
            self.expire()
