"""The index kept in Milvus (Milvus Lite, a file in tmp_path): the same answers as the folder index,
incremental and resumable builds, readers that never see half a build, and the chat over it."""

from __future__ import annotations

import pytest

import rag
from rag import batches, milvus, milvus_target
from rag.chunking import chunk_document
from rag.config import ChunkSettings, MilvusSettings
from rag.documents import make_document
from rag.embedding import encode_passages

pytestmark = pytest.mark.slow  # each test starts Milvus Lite

DEFAULT = ChunkSettings()
LIGHTHOUSE = make_document(
    "lighthouse.txt",
    "Pendeen Lighthouse\n\nPendeen Lighthouse stands on the cliffs above Portheras Cove. Its foghorn was "
    "silenced in 2020, and its keepers left when the light was automated.\n",
)
NEW_RAILWAY = make_document(
    "railway.txt",
    "The Glen Valley Railway\n\nThe Glen Valley Railway now runs electric trains through a new tunnel under "
    "Kelby Hill.\n",
)
QUESTIONS = [
    "When does the bakery open?",
    "What does the library lend?",
    "Which towns does the railway connect?",
    "What do geologists monitor on the volcano?",
]


@pytest.fixture
def lite(tmp_path) -> MilvusSettings:
    return MilvusSettings(uri=str(tmp_path / "milvus" / "index.db"), collection="tiny")


class Recorder:
    """Wraps the real encoder: records the passages each call embeds; ``fail_on`` (1-based) raises."""

    def __init__(self):
        self.texts: list[str] = []
        self.calls = 0
        self.fail_on: int | None = None

    def __call__(self, texts, spans, **kwargs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt
        self.texts += list(texts)
        return encode_passages(texts, spans, **kwargs)


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(batches, "encode_passages", rec)
    return rec


def passages_of(docs) -> list[str]:
    return [c.embedding_text for d in docs for c in chunk_document(d, DEFAULT)]


def open_milvus(docs, tmp_path, lite, **options) -> rag.Index:
    return rag.open_index(
        documents=docs, index_dir=tmp_path / "work", milvus=lite, progress=False, strict=True, **options
    )


def test_milvus_ranks_and_answers_as_the_folder_index(tmp_path, tiny_docs, lite):
    folder = rag.open_index(documents=tiny_docs, index_dir=tmp_path / "files", progress=False)
    held = open_milvus(tiny_docs, tmp_path, lite)
    assert held.num_documents == folder.num_documents and held.num_passages == folder.num_passages
    assert list(held.passages) == list(folder.passages)
    for q in QUESTIONS:
        ours, theirs = held.search(q, k=4), folder.search(q, k=4)
        assert [h.row for h in ours] == [h.row for h in theirs]
        # cosine from the same vectors; BM25 by Milvus over the same terms, with bm25s's k1 and b
        assert [h.dense for h in ours] == pytest.approx([h.dense for h in theirs], abs=1e-5)
        assert [h.lexical for h in ours] == pytest.approx([h.lexical for h in theirs], rel=1e-3)
        a, b = held.ask(q), folder.ask(q)
        assert a.text == b.text and a.citations == b.citations
    # a name no passage holds is known to neither
    assert held.knows("sourdough") and not held.knows("Zanzibar")
    assert held.knows("Sourdugh") and not held.knows("Sxurdugh")  # one slip of spelling, and two


def test_a_passage_of_many_sentences_keeps_every_sentence_vector(tmp_path, lite):
    # a row keeps its sentences' vectors packed into strings of a bounded length: one passage here holds
    # more than one string's worth, and the sentence that matches the question comes last
    colours = ["red", "blue", "green", "amber", "violet", "grey", "white", "black", "pink", "teal"]
    lines = [f"Crate {i} is {colours[i % 10]}." for i in range(80)]
    lines.append("The lighthouse keeper painted the last crate with golden stripes.")
    docs = [make_document("crates.txt", "Crates\n\n" + " ".join(lines) + "\n")]
    wide = ChunkSettings(max_tokens=1000)
    folder = rag.open_index(documents=docs, index_dir=tmp_path / "files", progress=False, chunking=wide)
    held = open_milvus(docs, tmp_path, lite, chunking=wide)
    assert held.num_passages == folder.num_passages == 1
    assert len(held.passages[0].sentences) > milvus.SENTENCES_PER_STRING
    q = "Who painted golden stripes on the last crate?"
    (theirs,) = folder.search(q, k=1)
    # the fused score adds the passage's best sentence's cosine: that of its last sentence; so it does
    # after a build that copies the passage unchanged from the previous one
    (ours,) = held.search(q, k=1)
    assert ours.score == pytest.approx(theirs.score, abs=1e-3)
    more = [*docs, LIGHTHOUSE]
    copied = open_milvus(more, tmp_path, lite, chunking=wide)
    folder = rag.open_index(documents=more, index_dir=tmp_path / "files2", progress=False, chunking=wide)
    (ours,), (theirs,) = copied.search(q, k=1), folder.search(q, k=1)
    assert ours.score == pytest.approx(theirs.score, abs=1e-3)


def test_questions_in_other_languages_work_on_milvus(tmp_path, tiny_docs, lite):
    folder = rag.open_index(documents=tiny_docs, index_dir=tmp_path / "files", progress=False)
    held = open_milvus(tiny_docs, tmp_path, lite)
    assert held.multilingual
    for q in ("火山最后一次喷发时发生了什么？", "Wann öffnet die Bäckerei?"):
        assert [h.row for h in held.search_multilingual([q])] == [
            h.row for h in folder.search_multilingual([q])
        ]
        assert held.gloss(q) == folder.gloss(q) and held.gloss(q).text  # the words the reader reads
        assert held.ask(q).text == folder.ask(q).text
    answer = held.ask("火山最后一次喷发时发生了什么？")
    assert answer.citations[0].source == "volcano.txt" and answer.language == "zh"


def test_an_edit_re_embeds_only_that_document_and_readers_switch_whole(tmp_path, tiny_docs, lite, recorder):
    first = open_milvus(tiny_docs, tmp_path, lite)
    assert recorder.texts == passages_of(tiny_docs)
    recorder.texts.clear()
    edited = [NEW_RAILWAY if d.id == "railway.txt" else d for d in tiny_docs] + [LIGHTHOUSE]
    second = open_milvus(edited, tmp_path, lite)
    assert recorder.texts == passages_of([NEW_RAILWAY, LIGHTHOUSE])  # the rest copied, not embedded
    assert second.ask("What runs through the tunnel under Kelby Hill?").citations[0].source == "railway.txt"
    assert "lighthouse.txt" in rag.Index.open(milvus=lite).documents
    # the reader that opened the previous build keeps answering from it; the one before that is dropped
    assert first.ask("What crosses the stone viaduct?").citations[0].source == "railway.txt"
    recorder.texts.clear()
    open_milvus(edited[:-1], tmp_path, lite)
    assert recorder.texts == []  # a removal embeds nothing
    target = milvus_target.MilvusTarget(lite)
    assert len(target.generations()) == 2 and target.current() == target.generations()[-1]


def test_a_build_killed_midway_leaves_the_previous_index_and_the_next_resumes(
    tmp_path, tiny_docs, lite, recorder, monkeypatch
):
    before = open_milvus(tiny_docs[:1], tmp_path, lite)
    recorder.texts.clear()
    recorder.fail_on = recorder.calls + 3  # killed while embedding the third batch
    monkeypatch.setattr(batches, "BATCH_CHUNKS", 1)  # one document per batch
    with pytest.raises(KeyboardInterrupt):
        open_milvus([*tiny_docs, LIGHTHOUSE], tmp_path, lite)
    assert recorder.texts == passages_of(tiny_docs[1:3])
    reader = rag.Index.open(milvus=lite)
    assert list(reader.documents) == list(before.documents)

    # killed again, while writing to Milvus: still the previous index for readers
    recorder.texts.clear()
    recorder.fail_on = None
    real_insert = milvus_target.MilvusTarget.insert

    def dies_on_terms(self, collection, rows):
        if collection.endswith("_k"):  # the terms, written after the passages
            raise KeyboardInterrupt
        real_insert(self, collection, rows)

    monkeypatch.setattr(milvus_target.MilvusTarget, "insert", dies_on_terms)
    with pytest.raises(KeyboardInterrupt):
        open_milvus([*tiny_docs, LIGHTHOUSE], tmp_path, lite)
    assert list(rag.Index.open(milvus=lite).documents) == list(before.documents)
    monkeypatch.setattr(milvus_target.MilvusTarget, "insert", real_insert)

    after = open_milvus([*tiny_docs, LIGHTHOUSE], tmp_path, lite)
    assert recorder.texts == passages_of([*tiny_docs[3:], LIGHTHOUSE])  # only what no batch had finished
    assert list(after.passages) == [c for d in [*tiny_docs, LIGHTHOUSE] for c in chunk_document(d)]
    assert len(milvus_target.MilvusTarget(lite).generations()) == 2  # the half-written one is gone


def test_a_manifest_in_many_parts_reads_back(tmp_path, tiny_docs, lite, monkeypatch):
    monkeypatch.setattr(milvus_target, "MANIFEST_PART", 40)
    built = open_milvus(tiny_docs, tmp_path, lite, multilingual=False)
    reopened = rag.Index.open(milvus=lite)
    assert dict(reopened.documents) == dict(built.documents) and not reopened.multilingual


def test_an_index_written_in_an_earlier_layout_is_rebuilt(tmp_path, tiny_docs, lite, recorder):
    open_milvus(tiny_docs, tmp_path, lite, multilingual=False)
    target = milvus_target.MilvusTarget(lite)
    manifest = target.load(DEFAULT).manifest
    target.write_manifest(target.current(), {**manifest, "backend": {**manifest["backend"], "layout": 1}})
    with pytest.raises(rag.IndexMismatch, match="earlier version - rebuild"):
        rag.Index.open(milvus=lite)
    recorder.texts.clear()
    rebuilt = open_milvus(tiny_docs, tmp_path, lite, multilingual=False)
    assert recorder.texts == passages_of(tiny_docs)  # every passage embedded again
    assert dict(rag.Index.open(milvus=lite).documents) == dict(rebuilt.documents)


def test_no_index_in_milvus_says_how_to_build_one(lite):
    with pytest.raises(rag.IndexNotFound, match="python -m index build --backend milvus"):
        rag.Index.open(milvus=lite)


def test_rag_index_uri_makes_ask_read_the_index_in_milvus(tmp_path, tiny_docs, lite, monkeypatch):
    open_milvus(tiny_docs, tmp_path, lite)
    monkeypatch.setenv("RAG_INDEX_URI", lite.uri)
    monkeypatch.setenv("RAG_INDEX_COLLECTION", lite.collection)
    rag.reset_default_index()
    # the configured source folder does not exist: the index is read as built, not rebuilt from it
    answer = rag.ask("When does the bakery open?")
    assert "six" in answer.text and answer.citations[0].source == "bakery.txt"


def test_index_build_cli_writes_to_milvus(tmp_path, tiny_source, quiet_rag_logger, capsys):
    from index.__main__ import main

    uri = str(tmp_path / "cli.db")
    argv = ["build", "--source", str(tiny_source), "--out", str(tmp_path / "work"), "--backend", "milvus"]
    assert main([*argv, "--uri", uri]) == 0
    assert f"index at {uri} (collection rag): 4 documents" in capsys.readouterr().out
    assert main(["info", "--backend", "milvus", "--uri", uri]) == 0
    assert '"documents": "4 documents"' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(argv)  # no --uri
    assert "--backend milvus needs --uri" in capsys.readouterr().err


def test_private_uploads_over_an_index_in_milvus(tmp_path, tiny_docs, lite, monkeypatch):
    from ui.library import Library, Upload
    from ui.sessions import Sessions

    open_milvus(tiny_docs, tmp_path, lite)
    monkeypatch.setenv("RAG_INDEX_URI", lite.uri)
    monkeypatch.setenv("RAG_INDEX_COLLECTION", lite.collection)
    shared = Library()  # its source folder does not exist here: the documents come from Milvus
    assert shared.load().num_documents == 4
    sessions = Sessions(shared)
    mine = sessions.own("visitor")
    note = mine.add([Upload("lighthouse.txt", LIGHTHOUSE.text.encode())])
    assert "lighthouse.txt" in note
    assert mine.index.ask("When was the foghorn silenced?").citations[0].source == "uploads/lighthouse.txt"
    assert mine.index.ask("When does the bakery open?").citations[0].source == "bakery.txt"
    assert shared.index.num_documents == 4  # the shared index is not written


def test_both_backends_keep_the_store_contract(tmp_path, tiny_docs, lite):
    from rag.nlp import terms
    from rag.store import load

    open_milvus(tiny_docs, tmp_path, lite)
    rag.open_index(documents=tiny_docs, index_dir=tmp_path / "files", progress=False)
    folder, held = load(tmp_path / "files", DEFAULT), milvus_target.MilvusTarget(lite).load(DEFAULT)
    rows = list(range(len(folder.passages)))
    for store in (folder, held):
        for query in ("bakery oven bakes bread", "steam trains at the station", "reading room"):
            words = terms(query)
            top = dict(store.lexical(words, len(rows)))
            # a row's BM25 score is the same asked for by row as found by search; 0 where no term occurs
            assert store.lexical_scores(words, rows).tolist() == pytest.approx(
                [top.get(i, 0.0) for i in rows], rel=1e-3
            )
            assert top and all(s > 0 for s in top.values())
        assert [store.document_frequency(t) for t in ("bakeri", "train", "zanzibar")] == [1, 1, 0]
        assert store.known_terms(["bakeri", "zanzibar", "train", "bakerri"]) == {"bakeri", "train"}
    assert held.passage_vectors(rows[::-1]) == pytest.approx(folder.passage_vectors(rows[::-1]), abs=1e-6)
    for a, b in zip(held.passage_sentences(rows), folder.passage_sentences(rows), strict=True):
        assert a == pytest.approx(b.astype("float32"), abs=1e-6)
    assert held.multilingual_vectors(rows) == pytest.approx(folder.multilingual_vectors(rows), abs=1e-6)
    assert [p.raw(0) for p in (held.passages, folder.passages)] == [folder.passages.raw(0)] * 2


def test_a_copied_passage_is_scored_by_the_frequencies_of_the_new_build(tmp_path, tiny_docs, lite, recorder):
    from rag.nlp import terms
    from rag.store import load

    open_milvus(tiny_docs, tmp_path, lite)
    market = make_document(
        "market.txt",
        "The Saturday Market\n\nThe Saturday market sells sourdough from the bakery and old maps from the "
        "library.\n",
    )
    recorder.texts.clear()
    docs = [*tiny_docs, market]
    open_milvus(docs, tmp_path, lite)
    assert recorder.texts == passages_of([market])  # the bakery and the library copied
    rag.open_index(documents=docs, index_dir=tmp_path / "files", progress=False)
    folder, held = load(tmp_path / "files", DEFAULT), milvus_target.MilvusTarget(lite).load(DEFAULT)
    rows = list(range(len(folder.passages)))
    # the terms the new document shares with copied ones are rarer no more
    words = terms("sourdough bakery maps library")
    assert held.lexical_scores(words, rows).tolist() == pytest.approx(
        folder.lexical_scores(words, rows).tolist(), rel=1e-3
    )
    # as a search brings them back: a word in no passage found by a search that found fewer than asked
    assert held.lexical(terms("sourdough Zanzibar"), 10)
    assert [held.document_frequency(t) for t in terms("sourdough Zanzibar")] == [2, 0]
    assert [folder.document_frequency(t) for t in terms("sourdough Zanzibar")] == [2, 0]


def test_a_reader_follows_builds_made_elsewhere(tmp_path, tiny_docs, lite, monkeypatch):
    open_milvus(tiny_docs, tmp_path, lite)
    monkeypatch.setenv("RAG_INDEX_URI", lite.uri)
    monkeypatch.setenv("RAG_INDEX_COLLECTION", lite.collection)
    monkeypatch.setattr(milvus.MilvusIndex, "CHECK_SECONDS", 0.0)
    rag.reset_default_index()
    reader = rag.Index.open(milvus=lite)
    assert reader.latest() is reader  # nothing new
    assert rag.ask("When was the foghorn silenced?").abstained
    open_milvus([*tiny_docs, LIGHTHOUSE], tmp_path, lite)  # as python -m index build on another machine
    assert "lighthouse.txt" in reader.latest().documents and "lighthouse.txt" not in reader.documents
    assert rag.ask("When was the foghorn silenced?").citations[0].source == "lighthouse.txt"


def test_the_chat_refuses_shared_uploads_into_an_index_in_milvus(lite, monkeypatch, capsys):
    from ui.__main__ import main

    monkeypatch.setenv("RAG_INDEX_URI", lite.uri)
    assert main(["--shared-uploads"]) == 2
    assert "--shared-uploads needs an index of local files" in capsys.readouterr().err


def test_milvus_lite_slow_to_open_its_socket_is_waited_for(tmp_path, monkeypatch):
    # Milvus Lite's launcher returns before its process listens; the client then fails at once
    import pymilvus

    tries = []

    class SlowStart:
        def __init__(self, uri, **options):
            tries.append(uri)
            if len(tries) < 3:
                raise pymilvus.MilvusException(message="Fail connecting to server on unix:/tmp/x.sock")

    monkeypatch.setattr(pymilvus, "MilvusClient", SlowStart)
    settings = MilvusSettings(uri=str(tmp_path / "slow.db"), collection="slow")
    assert isinstance(milvus.client(settings), SlowStart)
    assert len(tries) == 3


def test_a_milvus_lite_file_that_cannot_be_opened_is_refused_at_once(tmp_path, monkeypatch):
    # Milvus Lite refuses a file another program holds: nothing would come of waiting
    import pymilvus

    tries = []

    class Held:
        def __init__(self, uri, **options):
            tries.append(uri)
            raise pymilvus.exceptions.ConnectionConfigException(message="Open local milvus failed")

    monkeypatch.setattr(pymilvus, "MilvusClient", Held)
    settings = MilvusSettings(uri=str(tmp_path / "held.db"), collection="held")
    with pytest.raises(rag.errors.IndexUnavailable, match="Open local milvus failed"):
        milvus.client(settings)
    assert len(tries) == 1
