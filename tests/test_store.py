"""Stage 4: the index on disk - round-trips, incremental updates, rebuilds, crashes and damage."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from dataclasses import asdict
from pathlib import Path

import bm25s
import faiss
import numpy as np
import pytest

import rag
from rag import batches, build, store
from rag.chunking import chunk_document
from rag.config import ChunkSettings
from rag.documents import make_document
from rag.embedding import embed, encode_passages
from rag.generation import ivf_lists

DEFAULT = ChunkSettings()
SMALL = ChunkSettings(max_tokens=40, overlap_tokens=10)

LIGHTHOUSE = make_document(
    "lighthouse.txt",
    "Cape Wrath Lighthouse\n\nThe lighthouse keeper climbs the spiral staircase to trim the lamp at dusk.\n",
)
NEW_RAILWAY = make_document(
    "railway.txt",
    "The Glen Valley Railway\n\nThe Glen Valley Railway now runs electric trains through a new tunnel under "
    "Kelby Hill.\n",
)


class EmbedRecorder:
    """Wraps the real ``encode_passages``: records every call's passages and delegates, so vectors stay
    real. ``fail_on`` makes that call (1-based) raise, like a build killed half-way."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.fail_on: int | None = None

    def __call__(self, texts, spans, **kwargs):
        if self.fail_on is not None and len(self.calls) + 1 == self.fail_on:
            raise KeyboardInterrupt
        self.calls.append(list(texts))
        return encode_passages(texts, spans, **kwargs)

    @property
    def texts(self) -> list[str]:
        return [t for call in self.calls for t in call]


@pytest.fixture
def recorder(monkeypatch) -> EmbedRecorder:
    rec = EmbedRecorder()
    monkeypatch.setattr(batches, "encode_passages", rec)
    return rec


def embedded_texts(docs, settings=DEFAULT) -> list[str]:
    """What sync must embed for ``docs``: its passages, with titles (sentences come from the same pass)."""
    return [c.embedding_text for d in docs for c in chunk_document(d, settings)]


def snapshot(folder) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def generation(index_dir):
    return index_dir / (index_dir / "CURRENT").read_text(encoding="utf-8").strip()


def assert_vectors_match_texts(loaded: store.StoredIndex) -> None:
    """Row i of the FAISS index is passage i; each sentence's row holds that sentence's vector."""
    chunks = list(loaded.passages)
    chunk_vecs = loaded.vectors.reconstruct_n(0, loaded.vectors.ntotal)
    np.testing.assert_allclose(chunk_vecs, embed([c.embedding_text for c in chunks]), atol=1e-4)
    rows = [r for i in range(len(chunks)) for r in loaded.sentence_rows(i)]
    assert rows == list(range(len(loaded.sentence_vectors)))
    assert [len(loaded.sentence_rows(i)) for i in range(len(chunks))] == [len(c.sentences) for c in chunks]
    _, expected = encode_passages([c.embedding_text for c in chunks], [c.sentence_spans for c in chunks])
    np.testing.assert_allclose(np.asarray(loaded.sentence_vectors, dtype=np.float32), expected, atol=2e-3)


@pytest.fixture(scope="module")
def built_tiny(tmp_path_factory, tiny_corpus):
    """The tiny corpus, indexed once for the tests that damage a copy of it."""
    out = tmp_path_factory.mktemp("tiny-index")
    build.sync([make_document(n, t) for n, t in tiny_corpus.items()], out, DEFAULT, progress=False)
    return out


@pytest.fixture
def tiny_copy(built_tiny, tmp_path):
    out = tmp_path / "index"
    shutil.copytree(built_tiny, out)
    return out


def test_build_then_load_round_trip(tmp_path, tiny_docs):
    built = build.sync(tiny_docs, tmp_path / "index", DEFAULT, progress=False)
    loaded = store.load(tmp_path / "index", DEFAULT)
    assert list(loaded.passages) == list(built.passages) == [c for d in tiny_docs for c in chunk_document(d)]
    np.testing.assert_array_equal(loaded.sentence_first, built.sentence_first)
    assert_vectors_match_texts(loaded)

    manifest = json.loads((generation(tmp_path / "index") / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == loaded.manifest
    assert manifest["format_version"] == store.FORMAT_VERSION
    assert manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["dimension"] == 384
    assert manifest["chunker"] == asdict(DEFAULT)
    assert manifest["documents"].keys() == {d.id for d in tiny_docs}
    for d in tiny_docs:
        assert manifest["documents"][d.id]["sha256"] == hashlib.sha256(d.text.encode("utf-8")).hexdigest()
        assert manifest["documents"][d.id]["title"] == d.title
    assert manifest["num_chunks"] == len(loaded.passages)

    gen = generation(tmp_path / "index")
    lines = (gen / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == faiss.read_index(str(gen / "chunks.faiss")).ntotal == len(loaded.passages)
    assert [json.loads(line)["text"] for line in lines] == [c.text for c in loaded.passages]


def test_index_files_are_transparent_never_pickles(tmp_path, tiny_docs):
    build.sync(tiny_docs, tmp_path / "index", DEFAULT, progress=False)
    files = snapshot(tmp_path / "index")
    gen = generation(tmp_path / "index").name
    names = ("manifest.json", "chunks.jsonl", "chunks.offsets.npy", "chunks.faiss")
    names += ("sentences.npy", "sentences.first.npy", "multilingual.npy")
    names += ("multilingual.words.json", "multilingual.words.npy")
    assert {"CURRENT", "LOCK", "RAG-INDEX", *(f"{gen}/{n}" for n in names)} <= set(files)
    bm25 = {name for name in files if name.startswith(f"{gen}/bm25/")}
    assert set(files) == {"CURRENT", "LOCK", "RAG-INDEX", *(f"{gen}/{n}" for n in names), *bm25}
    assert bm25 and all(name.endswith((".json", ".npy")) for name in bm25)
    for name, data in files.items():
        assert not name.endswith((".pkl", ".pickle")), name
        assert not data.startswith(b"\x80"), name  # the PROTO opcode every modern pickle starts with
        if name.endswith(".npy"):
            np.load(tmp_path / "index" / name, allow_pickle=False)
        elif name.endswith(".json"):
            json.loads(data)


def test_incremental_update_embeds_only_new_and_changed_documents(tmp_path, tiny_docs, recorder):
    index_dir = tmp_path / "index"
    before = build.sync(tiny_docs, index_dir, DEFAULT, progress=False)
    bakery_vectors = [
        before.vectors.reconstruct(i) for i, c in enumerate(before.passages) if c.doc_id == "bakery.txt"
    ]
    recorder.calls.clear()

    # bakery and library unchanged, railway changed, volcano removed, lighthouse added
    docs = [d for d in tiny_docs if d.id in ("bakery.txt", "library.txt")] + [LIGHTHOUSE, NEW_RAILWAY]
    docs.sort(key=lambda d: d.id)
    after = build.sync(docs, index_dir, DEFAULT, progress=False)

    assert recorder.texts == embedded_texts([LIGHTHOUSE, NEW_RAILWAY])
    assert after.manifest["documents"].keys() == {
        "bakery.txt",
        "library.txt",
        "lighthouse.txt",
        "railway.txt",
    }
    assert "volcano.txt" not in {c.doc_id for c in after.passages}
    assert list(after.passages) == [c for d in docs for c in chunk_document(d, DEFAULT)]
    assert after.manifest["documents"]["railway.txt"]["sha256"] == store.sha256(NEW_RAILWAY.text)
    kept = [after.vectors.reconstruct(i) for i, c in enumerate(after.passages) if c.doc_id == "bakery.txt"]
    np.testing.assert_array_equal(np.array(kept), np.array(bakery_vectors))  # copied, not re-embedded
    assert_vectors_match_texts(after)
    assert [p.name for p in index_dir.glob("gen-*")] == [generation(index_dir).name]  # old one cleaned up


def test_sync_without_changes_embeds_nothing_and_keeps_the_generation(tmp_path, tiny_docs, recorder):
    build.sync(tiny_docs, tmp_path / "index", DEFAULT, progress=False)
    files = snapshot(tmp_path / "index")
    recorder.calls.clear()
    again = build.sync(tiny_docs, tmp_path / "index", DEFAULT, progress=False)
    assert recorder.texts == []
    assert snapshot(tmp_path / "index") == files
    assert len(again.passages) == len(tiny_docs)


def test_removing_a_document_embeds_nothing(tmp_path, tiny_docs, recorder):
    build.sync(tiny_docs, tmp_path / "index", DEFAULT, progress=False)
    recorder.calls.clear()
    after = build.sync(tiny_docs[:-1], tmp_path / "index", DEFAULT, progress=False)
    assert recorder.texts == []
    assert {c.doc_id for c in after.passages} == {d.id for d in tiny_docs[:-1]}
    assert_vectors_match_texts(after)


def test_other_chunker_settings_mismatch_on_load_and_rebuild_on_open(tmp_path, tiny_docs, recorder, caplog):
    index_dir = tmp_path / "index"
    build.sync(tiny_docs, index_dir, SMALL, progress=False)
    with pytest.raises(rag.IndexMismatch, match="chunker") as err:
        store.load(index_dir, DEFAULT)
    assert "python -m index build" in str(err.value)

    recorder.calls.clear()
    with caplog.at_level(logging.WARNING, logger="rag"):
        index = rag.open_index(documents=tiny_docs, index_dir=index_dir, progress=False)
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert store.load(index_dir, DEFAULT).manifest["chunker"] == asdict(DEFAULT)
    assert recorder.texts == embedded_texts(tiny_docs)  # everything again: nothing reusable
    assert list(store.load(index_dir, DEFAULT).passages) == list(index.passages)
    with pytest.raises(rag.IndexMismatch):
        store.load(index_dir, SMALL)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("format_version", store.FORMAT_VERSION + 1),
        ("model", "another/model"),
        ("dimension", 768),
        ("reading", store.READING_VERSION - 1),
        ("terms", store.TERMS_VERSION - 1),
    ],
)
def test_manifest_of_another_format_or_model_is_a_mismatch(tiny_copy, key, value):
    path = generation(tiny_copy) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**manifest, key: value}), encoding="utf-8")
    with pytest.raises(rag.IndexMismatch, match=key):
        store.load(tiny_copy, DEFAULT)


def test_crash_mid_build_leaves_previous_index_loadable_and_unchanged(tmp_path, tiny_docs, monkeypatch):
    index_dir = tmp_path / "index"
    before = build.sync(tiny_docs, index_dir, DEFAULT, progress=False)
    files = snapshot(index_dir)

    def crash(self, path, *args, **kwargs):  # bm25s writing its files into the new generation
        Path(path).mkdir()
        (Path(path) / "half.npy").write_text("half a file", encoding="utf-8")
        raise OSError("disk full")

    monkeypatch.setattr(bm25s.BM25, "save", crash)
    with pytest.raises(rag.IndexUpdateFailed, match="disk full"):
        build.sync([*tiny_docs, LIGHTHOUSE], index_dir, DEFAULT, progress=False)

    # not a byte of the index changed and no temporary directory is left; the finished embedding
    # work waits under build/ for the next build
    assert {k: v for k, v in snapshot(index_dir).items() if not k.startswith("build/")} == files
    assert [p.name for p in index_dir.iterdir() if p.name.startswith(".")] == []
    assert list(store.load(index_dir, DEFAULT).passages) == list(before.passages)

    monkeypatch.undo()  # the next build succeeds and moves on
    after = build.sync([*tiny_docs, LIGHTHOUSE], index_dir, DEFAULT, progress=False)
    assert "lighthouse.txt" in after.manifest["documents"]


def test_missing_index_says_how_to_build_one(tmp_path):
    with pytest.raises(rag.IndexNotFound, match="python -m index build"):
        store.load(tmp_path / "nothing-here", DEFAULT)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


DAMAGE = {
    "manifest truncated": lambda gen: _truncate(gen / "manifest.json"),
    "manifest empty": lambda gen: (gen / "manifest.json").write_text(""),
    "manifest deleted": lambda gen: (gen / "manifest.json").unlink(),
    "CURRENT names a missing generation": lambda gen: shutil.rmtree(gen),
    "chunks truncated": lambda gen: _truncate(gen / "chunks.jsonl"),
    "chunk offsets deleted": lambda gen: (gen / "chunks.offsets.npy").unlink(),
    "bm25 deleted": lambda gen: shutil.rmtree(gen / "bm25"),
    "chunks deleted": lambda gen: (gen / "chunks.jsonl").unlink(),
    "faiss file garbage": lambda gen: (gen / "chunks.faiss").write_bytes(b"not an index"),
    "sentence vectors deleted": lambda gen: (gen / "sentences.npy").unlink(),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_index_is_not_found_with_a_hint(tiny_copy, damage):
    damage(generation(tiny_copy))
    with pytest.raises(rag.IndexNotFound, match="python -m index build"):
        store.load(tiny_copy, DEFAULT)


@pytest.mark.parametrize("content", ["null", "[]"])
def test_manifest_that_is_not_an_object_is_not_found(tiny_copy, content):
    (generation(tiny_copy) / "manifest.json").write_text(content, encoding="utf-8")
    with pytest.raises(rag.IndexNotFound, match="python -m index build"):
        store.load(tiny_copy, DEFAULT)


def test_open_index_rebuilds_a_corrupt_index(tiny_copy, tiny_docs):
    _truncate(generation(tiny_copy) / "manifest.json")
    index = rag.open_index(documents=tiny_docs, index_dir=tiny_copy, progress=False)
    assert index.num_documents == len(tiny_docs)
    assert list(store.load(tiny_copy, DEFAULT).passages) == list(index.passages)


def test_duplicate_document_ids_are_refused(tmp_path, tiny_docs):
    with pytest.raises(ValueError, match="unique"):
        build.sync([*tiny_docs, tiny_docs[0]], tmp_path / "index", DEFAULT, progress=False)
    assert not (tmp_path / "index").exists()


def test_two_builds_in_the_same_second_both_succeed(tmp_path, tiny_docs, monkeypatch):
    # the clock stands still: what happens whenever a small update follows a build within a second
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20240101000000")
    build.sync(tiny_docs, tmp_path / "index", DEFAULT, progress=False)
    after = build.sync([*tiny_docs, LIGHTHOUSE], tmp_path / "index", DEFAULT, progress=False)
    assert "lighthouse.txt" in after.manifest["documents"]


def test_an_interrupted_build_resumes_without_redoing_finished_batches(tmp_path, tiny_docs, recorder):
    index_dir = tmp_path / "index"
    before = build.sync(tiny_docs[:1], index_dir, DEFAULT, progress=False)
    files = snapshot(index_dir)
    recorder.calls.clear()
    recorder.fail_on = 3  # killed while embedding the third batch
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batches, "BATCH_CHUNKS", 1)  # one document per batch
        with pytest.raises(KeyboardInterrupt):
            build.sync([*tiny_docs, LIGHTHOUSE], index_dir, DEFAULT, progress=False)
    finished = list(recorder.texts)
    assert finished == embedded_texts(tiny_docs[1:3])
    # the index in use is untouched
    assert {k: v for k, v in snapshot(index_dir).items() if not k.startswith("build/")} == files
    assert list(store.load(index_dir, DEFAULT).passages) == list(before.passages)

    recorder.calls.clear()
    recorder.fail_on = None
    after = build.sync([*tiny_docs, LIGHTHOUSE], index_dir, DEFAULT, progress=False)
    assert recorder.texts == embedded_texts([*tiny_docs[3:], LIGHTHOUSE])  # only what was left
    assert list(after.passages) == [c for d in [*tiny_docs, LIGHTHOUSE] for c in chunk_document(d)]
    assert_vectors_match_texts(after)
    assert not (index_dir / "build").exists()


def test_a_batch_from_a_build_with_other_settings_is_not_reused(tmp_path, tiny_docs, recorder):
    index_dir = tmp_path / "index"
    recorder.fail_on = 2
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batches, "BATCH_CHUNKS", 1)
        with pytest.raises(KeyboardInterrupt):
            build.sync(tiny_docs, index_dir, SMALL, progress=False)
    recorder.calls.clear()
    recorder.fail_on = None
    build.sync(tiny_docs, index_dir, DEFAULT, progress=False)
    assert recorder.texts == embedded_texts(tiny_docs)


def test_the_passage_table_is_read_lazily(tiny_copy):
    # the last line garbled in place (same length, so every offset holds): opening parses no passage,
    # so the index opens and every other passage reads; only the garbled one fails, when asked for
    lines = (generation(tiny_copy) / "chunks.jsonl").read_bytes().splitlines(keepends=True)
    lines[-1] = b"#" * (len(lines[-1]) - 1) + b"\n"
    (generation(tiny_copy) / "chunks.jsonl").write_bytes(b"".join(lines))
    loaded = store.load(tiny_copy, DEFAULT, verify=False)
    third = loaded.passages[2]
    assert third == loaded.passages[-len(loaded.passages) + 2] and third.text
    with pytest.raises(ValueError):
        loaded.passages[len(loaded.passages) - 1]
    with pytest.raises(IndexError):
        loaded.passages[len(loaded.passages)]


def test_large_indexes_switch_to_an_ivf_index_that_finds_the_same_passages(tmp_path, tiny_docs, monkeypatch):
    flat = rag.open_index(documents=tiny_docs, index_dir=tmp_path / "flat", progress=False)
    monkeypatch.setattr("rag.generation.IVF_FROM", 2)
    ivf = rag.open_index(documents=tiny_docs, index_dir=tmp_path / "ivf", progress=False)
    assert store.load(tmp_path / "flat", DEFAULT).manifest["vector_index"] == {"kind": "flat"}
    stored_ivf = store.load(tmp_path / "ivf", DEFAULT)
    assert stored_ivf.manifest["vector_index"] == {"kind": "ivf", "lists": 1, "nprobe": 1}
    assert isinstance(stored_ivf.vectors, faiss.IndexIVFFlat)
    for query in ("sourdough loaves", "steam locomotive over a viaduct", "lava and ash"):
        assert [h.row for h in ivf.search(query, k=3)] == [h.row for h in flat.search(query, k=3)]
    # an incremental update copies the vectors out of the IVF index
    after = build.sync([*tiny_docs, LIGHTHOUSE], tmp_path / "ivf", DEFAULT, progress=False)
    assert_vectors_match_texts(after)


@pytest.mark.parametrize(("n", "lists"), [(0, 1), (38, 1), (390, 10), (10_000, 256), (100_000, 1264)])
def test_ivf_lists_follow_four_square_roots_with_enough_vectors_to_train_each(n, lists):
    assert ivf_lists(n) == lists


def test_a_second_build_waits_for_the_first(tmp_path, tiny_docs, caplog):
    import fcntl

    index_dir = tmp_path / "index"
    index_dir.mkdir()
    held = threading.Event()

    def hold():
        with (index_dir / "LOCK").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            held.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="rag"):
        build.sync(tiny_docs, index_dir, DEFAULT, progress=False)
    holder.join()
    assert time.perf_counter() - started >= 0.4
    assert any("another build" in r.getMessage() for r in caplog.records)


def _files(folder):
    from rag.documents import scan_documents

    return scan_documents(folder)


def test_unchanged_files_are_not_read_again(tmp_path, tiny_source, recorder):
    from rag.documents import read_document

    index_dir = tmp_path / "index"
    build.sync(_files(tiny_source), index_dir, DEFAULT, progress=False, read=read_document)
    files = snapshot(index_dir)

    def no_read(f):
        raise AssertionError(f"read {f.id} although its size and mtime did not change")

    recorder.calls.clear()
    again = build.sync(_files(tiny_source), index_dir, DEFAULT, progress=False, read=no_read)
    assert recorder.texts == []
    assert snapshot(index_dir) == files
    assert again.manifest["num_documents"] == len(_files(tiny_source))


def test_a_touched_but_unchanged_file_is_hashed_not_embedded(tmp_path, tiny_source, tiny_docs, recorder):
    import os

    from rag.documents import read_document

    index_dir = tmp_path / "index"
    build.sync(_files(tiny_source), index_dir, DEFAULT, progress=False, read=read_document)
    path = tiny_source / "bakery.txt"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    recorder.calls.clear()
    after = build.sync(_files(tiny_source), index_dir, DEFAULT, progress=False, read=read_document)
    assert recorder.texts == []
    assert after.manifest["documents"]["bakery.txt"]["mtime_ns"] == path.stat().st_mtime_ns  # remembered

    path.write_text(path.read_text(encoding="utf-8") + "It also sells rye bread.\n", encoding="utf-8")
    recorder.calls.clear()
    edited = build.sync(_files(tiny_source), index_dir, DEFAULT, progress=False, read=read_document)
    bakery = [read_document(f) for f in _files(tiny_source) if f.id == "bakery.txt"]
    assert recorder.texts == embedded_texts(bakery)
    assert "rye bread" in " ".join(c.text for c in edited.passages)


def test_pdf_pages_reach_the_citations(tmp_path, make_pdf):
    folder = tmp_path / "docs"
    (folder / "reports").mkdir(parents=True)
    (folder / "reports" / "harbour.pdf").write_bytes(
        make_pdf(
            [
                "Harbour Annual Report. The harbour master keeps the tide tables for the port.",
                "The new breakwater at Porthkennack was finished in 1987 by the county engineers.",
            ]
        )
    )
    (folder / "note.txt").write_text("Garden note\n\nThe roses bloom in June.\n", encoding="utf-8")
    index = rag.open_index(source=folder, index_dir=tmp_path / "index", progress=False)
    answer = rag.ask("When was the breakwater at Porthkennack finished?", index=index)
    top = answer.citations[0]
    assert top.source == "reports/harbour.pdf"
    assert top.page == 2
    assert "1987" in answer.text
    notes = rag.retrieve("roses bloom", k=1, index=index)
    assert notes[0].source == "note.txt" and notes[0].page is None
