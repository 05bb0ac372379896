"""What a careful user and an attacker tried against the library and its command lines: folders that are
not indexes, links out of the source folder, huge or crafted files, read-only and full disks, damaged
index files, undecodable questions. Each test is one class of input."""

from __future__ import annotations

import builtins
import errno
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rag
from index.__main__ import main as index_main
from rag import store
from rag.chunking import chunk_document
from rag.config import ChunkSettings
from rag.documents import make_document, scan_documents
from rag.nlp import count_tokens, split
from rag.readers import extract

DEFAULT = ChunkSettings()
LIBRARY_Q = "Until what time does the reading room of the Old Town Library stay open?"


def build(source: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "index", "build", "--source", str(source), "--out", str(out), *args],
        cwd=out.parent,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def generation(index_dir: Path) -> Path:
    return index_dir / (index_dir / "CURRENT").read_text(encoding="utf-8").strip()


# --- lost data --------------------------------------------------------------------------------------


def test_a_build_refuses_a_folder_that_holds_other_files_and_deletes_nothing(tmp_path, tiny_source):
    project = tmp_path / "project"
    (project / "build").mkdir(parents=True)
    (project / "build" / "app.bin").write_bytes(b"compiled")
    (project / "gen-notes").mkdir()
    (project / "gen-notes" / "draft.txt").write_text("mine", encoding="utf-8")
    (project / "README").write_text("a project", encoding="utf-8")
    before = files(project)

    result = build(tiny_source, project)

    assert result.returncode == 2
    assert "not empty and holds no index" in result.stderr and "Traceback" not in result.stderr
    assert files(project) == before


def test_a_build_deletes_only_what_builds_wrote(tmp_path, tiny_source, tiny_docs):
    out = tmp_path / "index"
    rag.open_index(source=tiny_source, index_dir=out, progress=False)
    # files a person put into an index folder after all: builds must not take them with their own
    (out / "build").mkdir()
    (out / "build" / "keep.txt").write_text("mine", encoding="utf-8")
    (out / "gen-mine").mkdir()
    (out / "gen-mine" / "keep.txt").write_text("mine too", encoding="utf-8")
    (tiny_source / "extra.txt").write_text("Extra\n\nThe ferry leaves at dawn.\n", encoding="utf-8")

    rag.open_index(source=tiny_source, index_dir=out, progress=False)

    assert (out / "build" / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert (out / "gen-mine" / "keep.txt").read_text(encoding="utf-8") == "mine too"


# --- nothing outside the source folder --------------------------------------------------------------


def test_links_to_files_outside_the_source_folder_are_never_read(tmp_path, tiny_source, caplog):
    secret = tmp_path / "secret.txt"
    secret.write_text("Vault codes\n\nThe vault code of the bank is 4471 zebra.\n", encoding="utf-8")
    (tiny_source / "passwd.txt").symlink_to(secret)
    (tiny_source / "library-again.txt").symlink_to(tiny_source / "library.txt")  # inside: fine
    caplog.set_level(logging.WARNING, logger="rag")

    index = rag.open_index(source=tiny_source, index_dir=tmp_path / "index", progress=False)

    assert "passwd.txt" in caplog.text and "outside" in caplog.text
    assert "library-again.txt" in index.documents
    texts = [c.text for c in rag.retrieve("vault code of the bank", k=5, index=index)]
    assert texts and not any("zebra" in t for t in texts)


@pytest.mark.slow
def test_an_index_inside_its_source_folder_is_not_read_as_documents(tmp_path, tiny_source):
    out = tiny_source / "index"
    (out / "uploads").mkdir(parents=True)  # what the chat stores there
    (out / "uploads" / "pier.txt").write_text("The Pier\n\nThe pier opens in June.\n", encoding="utf-8")

    result = build(tiny_source, out)

    assert result.returncode == 0, result.stderr
    documents = store.read_manifest(out)[1]["documents"]
    assert sorted(documents) == [
        "bakery.txt",
        "library.txt",
        "railway.txt",
        "uploads/pier.txt",
        "volcano.txt",
    ]


def test_an_index_is_not_written_into_its_folder_of_documents(tmp_path, tiny_source):
    (tiny_source / "uploads").mkdir()
    (tiny_source / "uploads" / "pier.txt").write_text(
        "The Pier\n\nThe pier opens in June.\n", encoding="utf-8"
    )
    before = files(tiny_source)

    result = build(tiny_source, tiny_source)

    assert result.returncode == 2
    assert "not empty and holds no index" in result.stderr and "Traceback" not in result.stderr
    assert files(tiny_source) == before


# --- size ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_text_without_sentence_ends_is_cut_into_passages_within_the_budget():
    words = " ".join(f"word{i} lorem ipsum dolor" for i in range(12_000))  # ~240 KB, not one full stop
    doc = make_document("blob.txt", "Blob\n\n" + words + "\n")

    chunks = chunk_document(doc, DEFAULT)

    assert len(chunks) > 100
    assert max(count_tokens(c.text) for c in chunks) <= DEFAULT.max_tokens
    assert all(doc.text[c.start : c.end] == c.text for c in chunks)
    covered = " ".join(c.text for c in chunks)
    assert "word0 " in covered and "word11999 " in covered


@pytest.mark.slow
def test_a_text_longer_than_spacy_takes_is_split_into_sentences():
    text = "The mill turns. " * 70_000  # 1.12 million characters: spaCy alone refuses it (E088)
    sentences = split(text, [(0, len(text.rstrip()))])
    assert len(sentences) >= 69_000
    assert all(text[s.start : s.end].startswith("The mill") for s in sentences[:100])
    assert sentences[-1].end == len(text.rstrip())


def test_a_file_over_the_text_limit_is_skipped_and_the_rest_indexed(tmp_path, tiny_source, caplog):
    (tiny_source / "huge.txt").write_text("Huge\n\n" + "grain " * 900_000, encoding="utf-8")  # 5.4 M chars
    caplog.set_level(logging.WARNING, logger="rag")

    index = rag.open_index(source=tiny_source, index_dir=tmp_path / "index", progress=False)

    assert sorted(index.documents) == [
        "bakery.txt",
        "library.txt",
        "railway.txt",
        "volcano.txt",
    ]
    assert "huge.txt" in caplog.text and "5,000,000 characters" in caplog.text


def test_pdf_text_extraction_stops_at_the_limit(make_pdf):
    data = make_pdf(["The quarry is closed on Sundays. " * 40] * 6)
    assert len(extract(data, ".pdf").text) > 6000
    with pytest.raises(rag.DocumentUnreadable, match="more than 2,000 characters"):
        extract(data, ".pdf", max_chars=2000)


# --- read-only and full disks -------------------------------------------------------------------------


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only as a read-only mount would (root ignores permission bits): any write
    under it fails with EROFS."""
    folders: list[Path] = []

    def inside(path) -> bool:
        try:
            p = Path(os.fsdecode(path)).absolute()
        except TypeError:
            return False
        return any(p.is_relative_to(f) for f in folders)

    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))

    real_open, real_mkdir, real_replace = builtins.open, os.mkdir, os.replace

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and not isinstance(file, int) and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if inside(path):
            if os.path.exists(path):
                raise FileExistsError(errno.EEXIST, "File exists", os.fsdecode(path))
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if inside(src) or inside(dst):
            refuse(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "replace", replace)
    return lambda folder: folders.append(Path(folder).absolute())


def test_a_current_read_only_index_answers(tmp_path, tiny_source, read_only, monkeypatch):
    out = tmp_path / "index"
    rag.open_index(source=tiny_source, index_dir=out, progress=False)
    read_only(out)
    monkeypatch.setenv("RAG_SOURCE_DIR", str(tiny_source))
    monkeypatch.setenv("RAG_INDEX_DIR", str(out))

    answer = rag.ask(LIBRARY_Q)

    assert answer.citations[0].source == "library.txt"


@pytest.fixture
def stale_index(tmp_path, tiny_source) -> Path:
    """An index of the tiny corpus, built before a document was added to its folder."""
    out = tmp_path / "index"
    rag.open_index(source=tiny_source, index_dir=out, progress=False)
    (tiny_source / "ferry.txt").write_text("Ferry\n\nThe ferry leaves at dawn.\n", encoding="utf-8")
    return out


def test_a_read_only_index_with_changed_documents_answers_from_the_index_with_a_warning(
    stale_index, tiny_source, read_only, caplog
):
    out = stale_index
    read_only(out)
    caplog.set_level(logging.WARNING, logger="rag")

    index = rag.open_index(source=tiny_source, index_dir=out, progress=False)

    assert "ferry.txt" not in index.documents
    assert "read-only" in caplog.text and "answering from the index in use" in caplog.text
    assert rag.ask(LIBRARY_Q, index=index).citations[0].source == "library.txt"


def disk_full(monkeypatch):
    real_save = np.save

    def save(file, *args, **kwargs):
        if "batch-" in os.fspath(file):  # the batches a build saves as it embeds
            real_save(file, *args, **kwargs)
            raise OSError("1106304 requested and 948160 written")
        return real_save(file, *args, **kwargs)

    monkeypatch.setattr(np, "save", save)


def test_a_full_disk_fails_a_build_clearly_and_leaves_no_batches(tmp_path, tiny_source, monkeypatch, capsys):
    out = tmp_path / "index"
    disk_full(monkeypatch)

    assert index_main(["build", "--source", str(tiny_source), "--out", str(out)]) == 2

    err = capsys.readouterr().err
    assert "disk is full" in err and "Traceback" not in err
    assert not list(out.rglob("batch-*"))


def test_a_full_disk_while_updating_leaves_the_index_in_use_answering(
    stale_index, tiny_source, monkeypatch, caplog
):
    out = stale_index
    disk_full(monkeypatch)
    caplog.set_level(logging.WARNING, logger="rag")

    index = rag.open_index(source=tiny_source, index_dir=out, progress=False)

    assert "disk is full" in caplog.text
    assert rag.ask(LIBRARY_Q, index=index).citations[0].source == "library.txt"
    assert not list(out.rglob("batch-*"))


# --- damaged index files ------------------------------------------------------------------------------


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _same_length_edit(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b"nine in the evening", b"ten in the morning!"))


DAMAGE = {
    "flipped bytes": lambda gen: _flip(gen / "chunks.jsonl", 40),
    "same-length edit": lambda gen: _same_length_edit(gen / "chunks.jsonl"),
    "truncated": lambda gen: (gen / "chunks.jsonl").write_bytes((gen / "chunks.jsonl").read_bytes()[:-30]),
    "vectors edited": lambda gen: _flip(gen / "sentences.npy", (gen / "sentences.npy").stat().st_size - 3),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_index_file_is_named_and_the_index_rebuilt(tmp_path, tiny_source, damage, caplog):
    out = tmp_path / "index"
    rag.open_index(source=tiny_source, index_dir=out, progress=False)
    damage(generation(out))
    caplog.set_level(logging.WARNING, logger="rag")

    with pytest.raises(rag.IndexNotFound, match="damaged"):
        store.load(out, DEFAULT)
    index = rag.open_index(source=tiny_source, index_dir=out, progress=False)

    assert "damaged" in caplog.text and "rebuilding" in caplog.text
    assert any(name in caplog.text for name in ("chunks.jsonl", "sentences.npy"))
    reply = rag.ask(LIBRARY_Q, index=index)
    assert "nine" in reply.short_answer


# --- questions and options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question", ["Until what time is the library open?\udc80", "\ud800 library \x00 open?"]
)
def test_a_question_with_unencodable_characters_is_answered(tmp_path, tiny_source, question):
    index = rag.open_index(source=tiny_source, index_dir=tmp_path / "index", progress=False)
    answer = rag.ask(question, index=index, history=[{"role": "user", "content": "hello \udcff"}])
    assert answer.citations


def test_k_must_be_a_whole_number(tmp_path, tiny_source):
    index = rag.open_index(source=tiny_source, index_dir=tmp_path / "index", progress=False)
    for bad in ("3", 2.5, True):
        with pytest.raises(ValueError, match="k must be a whole number"):
            rag.ask(LIBRARY_Q, k=bad, index=index)


def test_a_decline_names_each_unknown_name_once_and_stays_short(tmp_path, tiny_source):
    index = rag.open_index(source=tiny_source, index_dir=tmp_path / "index", progress=False)
    question = "Did Wei meet " + ", ".join(["Wei"] * 200 + [f"Zorblat{i}" for i in range(40)]) + "?"
    answer = rag.ask(question[:2000], index=index)
    assert answer.abstained
    assert answer.text.count("Wei") == 1
    assert len(answer.text) < 400


def test_an_unreadable_file_is_warned_about_once_until_it_changes(tmp_path, tiny_source, caplog):
    bad = tiny_source / "latin1.txt"
    bad.write_bytes("Caf\xe9\n\nThe caf\xe9 opens at eight.\n".encode("latin-1"))
    out = tmp_path / "index"
    caplog.set_level(logging.WARNING, logger="rag")

    rag.open_index(source=tiny_source, index_dir=out, progress=False)
    assert "latin1.txt" in caplog.text
    caplog.clear()
    rag.open_index(source=tiny_source, index_dir=out, progress=False)
    assert "latin1.txt" not in caplog.text
    assert "latin1.txt" in store.read_manifest(out)[1]["skipped"]

    bad.write_text("Cafe\n\nThe cafe opens at eight.\n", encoding="utf-8")  # fixed: now it is read
    index = rag.open_index(source=tiny_source, index_dir=out, progress=False)
    assert "latin1.txt" in index.documents
    assert "latin1.txt" not in store.read_manifest(out)[1]["skipped"]


def test_scan_skips_a_link_out_even_when_named_like_a_document(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").symlink_to("/etc/hostname")
    assert scan_documents(folder) == []


def test_a_reader_does_not_wait_for_a_running_build(stale_index, tiny_source, caplog):
    import fcntl
    import time

    out = stale_index
    caplog.set_level(logging.WARNING, logger="rag")
    with (out / "LOCK").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build of another process is writing
        started = time.monotonic()
        index = rag.open_index(source=tiny_source, index_dir=out, progress=False)
        waited = time.monotonic() - started
    assert waited < 10
    assert "another build is updating" in caplog.text
    assert rag.ask(LIBRARY_Q, index=index).citations[0].source == "library.txt"
