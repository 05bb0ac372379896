"""Stage 2: chunks are whole sentences of content, within budget, overlapping as configured."""

from __future__ import annotations

import pytest

from rag.chunking import chunk_document
from rag.config import PROJECT_ROOT, ChunkSettings
from rag.documents import content_runs, load_documents, make_document
from rag.nlp import count_tokens, split

SEEDS = PROJECT_ROOT / "seeds"
SMALL = ChunkSettings(max_tokens=40, overlap_tokens=10)
SETTINGS = [pytest.param(ChunkSettings(), id="default"), pytest.param(SMALL, id="small")]

# Five sentences of 6-7 tokens each: two fit in 14 tokens, three do not.
KETTLES = (
    "Kettles\n"
    "Print\n"  # furniture: the title stands alone in its own run
    "The red kettle boils water. The blue kettle whistles loudly. The green kettle is cracked. "
    "The white kettle was sold. The black kettle is new.\n"
)
RED, BLUE, GREEN, WHITE, BLACK = (
    "The red kettle boils water.",
    "The blue kettle whistles loudly.",
    "The green kettle is cracked.",
    "The white kettle was sold.",
    "The black kettle is new.",
)


@pytest.fixture(scope="module")
def seed_docs():
    return load_documents(SEEDS)


@pytest.fixture(scope="module")
def seed_chunks(seed_docs):
    """{settings: [(document, its chunks)]}, chunked once for the module."""
    return {
        settings: [(doc, chunk_document(doc, settings)) for doc in seed_docs]
        for settings in (ChunkSettings(), SMALL)
    }


def test_token_counts_of_the_hand_worked_case():
    # the premise of the hand-worked cases below
    assert [count_tokens(s) for s in (RED, BLUE, GREEN, WHITE, BLACK)] == [6, 7, 6, 6, 6]
    assert count_tokens(f"{RED} {BLUE}") <= 14 < count_tokens(f"{RED} {BLUE} {GREEN}")


@pytest.mark.parametrize(
    ("overlap", "expected"),
    [
        # each chunk carries the previous one's last sentence over
        (7, [[RED, BLUE], [BLUE, GREEN], [GREEN, WHITE], [WHITE, BLACK]]),
        # no overlap: plain packing
        (0, [[RED, BLUE], [GREEN, WHITE], [BLACK]]),
        # BLUE (7 tokens) is over the overlap budget, so it is not carried; WHITE (6) is
        (6, [[RED, BLUE], [GREEN, WHITE], [WHITE, BLACK]]),
    ],
)
def test_hand_worked_packing(overlap, expected):
    doc = make_document("kettles.txt", KETTLES)
    chunks = chunk_document(doc, ChunkSettings(max_tokens=14, overlap_tokens=overlap))
    assert [c.text for c in chunks] == [" ".join(group) for group in expected]
    assert [[doc.text[s.start : s.end] for s in c.sentences] for c in chunks] == expected
    # the title run is not a chunk of its own; every chunk carries the title for embedding instead
    assert all(c.embedding_text == f"Kettles\n{c.text}" for c in chunks)


def test_embedding_text_does_not_repeat_a_title_the_chunk_starts_with():
    doc = make_document("k.txt", "Kettles boil water\nThe red kettle boils water.\n")
    (chunk,) = chunk_document(doc)
    assert chunk.text == "Kettles boil water\nThe red kettle boils water."
    assert chunk.embedding_text == chunk.text


@pytest.mark.parametrize("settings", SETTINGS)
def test_chunk_text_is_the_document_slice(seed_chunks, settings):
    for doc, chunks in seed_chunks[settings]:
        assert chunks, doc.id
        for c in chunks:
            assert doc.text[c.start : c.end] == c.text
            assert (c.doc_id, c.title, c.date) == (doc.id, doc.title, doc.date)
            assert c.start == c.sentences[0].start and c.end == c.sentences[-1].end
            assert all(a.end <= b.start for a, b in zip(c.sentences, c.sentences[1:], strict=False))


@pytest.mark.parametrize("settings", SETTINGS)
def test_chunks_fit_the_token_budget(seed_chunks, settings):
    for _, chunks in seed_chunks[settings]:
        for c in chunks:
            assert count_tokens(c.text) <= settings.max_tokens, c.text


@pytest.mark.parametrize("settings", SETTINGS)
def test_chunks_cover_every_sentence_of_the_content(seed_chunks, settings):
    for doc, chunks in seed_chunks[settings]:
        runs = [
            (s, e)
            for s, e in content_runs(doc.text)
            if doc.text[s:e].strip() != doc.title  # title-only run
        ]
        expected = {(s.start, s.end) for s in split(doc.text, runs)}
        covered = sorted({(s.start, s.end) for c in chunks for s in c.sentences})
        for s, e in expected - set(covered):
            # a sentence over the budget is covered by pieces of it, end to end but for the spaces between
            pieces = [(a, b) for a, b in covered if s <= a and b <= e]
            assert pieces and pieces[0][0] == s and pieces[-1][1] == e, (doc.id, doc.text[s:e])
            assert all(not doc.text[b:a].strip() for (_, b), (a, _) in zip(pieces, pieces[1:], strict=False))
            assert count_tokens(doc.text[s:e]) > settings.max_tokens
        assert all(any(s <= a and b <= e for s, e in expected) for a, b in covered), doc.id


def _overlapping_pairs(doc, chunks):
    """Consecutive chunks of one content run that share text."""
    runs = content_runs(doc.text)
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        same_run = any(s <= prev.start and nxt.end <= e for s, e in runs)
        if same_run and nxt.start < prev.end:
            yield prev, nxt


@pytest.mark.parametrize("settings", SETTINGS)
def test_consecutive_chunks_progress_and_share_whole_sentences(seed_chunks, settings):
    overlaps = 0
    for doc, chunks in seed_chunks[settings]:
        runs = content_runs(doc.text)
        for prev, nxt in zip(chunks, chunks[1:], strict=False):
            assert prev.start < nxt.start and prev.end < nxt.end  # each chunk moves on
            if not any(s <= prev.start and nxt.end <= e for s, e in runs):
                assert nxt.start > prev.end  # chunks of different runs never overlap
        for prev, nxt in _overlapping_pairs(doc, chunks):
            overlaps += 1
            shared = [s for s in nxt.sentences if s.start < prev.end]
            assert list(prev.sentences[-len(shared) :]) == shared  # whole sentences, not a cut
            assert len(shared) < len(prev.sentences)  # never the whole previous chunk
    assert overlaps > 0  # the seeds must exercise the overlap, or this test proves nothing


@pytest.mark.parametrize(
    "settings",
    [pytest.param(ChunkSettings(), id="default"), pytest.param(SMALL, id="small")],
)
def test_consecutive_chunks_overlap_by_at_most_overlap_tokens(seed_chunks, settings):
    for doc, chunks in seed_chunks[settings]:
        for prev, nxt in _overlapping_pairs(doc, chunks):
            assert count_tokens(doc.text[nxt.start : prev.end]) <= settings.overlap_tokens, doc.id


def test_hand_worked_overlap_of_several_short_sentences():
    # six sentences of 4 tokens: four fit in 16 tokens, two fit in an overlap of 8
    sentences = [
        "Ann ran home.",
        "Bob sat down.",
        "Cy hid away.",
        "Di sang out.",
        "Ed ate lunch.",
        "Flo slept in.",
    ]
    assert [count_tokens(s) for s in sentences] == [4] * 6
    doc = make_document("names.txt", "Names\nPrint\n" + " ".join(sentences) + "\n")
    chunks = chunk_document(doc, ChunkSettings(max_tokens=16, overlap_tokens=8))
    assert [c.text for c in chunks] == [" ".join(sentences[:4]), " ".join(sentences[2:])]


def test_small_budget_gives_several_chunks_per_document(seed_chunks):
    counts = {doc.id: len(chunks) for doc, chunks in seed_chunks[SMALL]}
    default = {doc.id: len(chunks) for doc, chunks in seed_chunks[ChunkSettings()]}
    assert all(n >= 3 for n in counts.values()), counts
    assert all(counts[d] > default[d] for d in counts), (counts, default)


@pytest.mark.parametrize("settings", SETTINGS)
def test_chunks_never_quote_page_furniture(seed_chunks, settings):
    for _, chunks in seed_chunks[settings]:
        for c in chunks:
            for furniture in (
                "Fonts:",
                "indicate the source when reprinting",
                "Editor:",
                "Recommended reading",
                "Updated :",
                "Read the original text",
            ):
                assert furniture not in c.text


def test_a_document_of_one_line_is_one_chunk_not_dropped():
    doc = make_document("one-line.txt", "The lighthouse on Cape Vell was lit in 1871 by keeper Ada Rowe.\n")
    chunks = chunk_document(doc)
    assert [c.text for c in chunks] == [doc.text.strip()]
