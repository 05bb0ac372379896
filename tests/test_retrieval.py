"""Stage 5: hybrid retrieval, worked by hand on a four-document corpus, then on the seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

import rag
from rag import retrieval
from rag.config import PROJECT_ROOT
from rag.documents import make_document
from rag.embedding import embed, encode_passages
from rag.nlp import terms

SEEDS = PROJECT_ROOT / "seeds"
FUSIONS = ["convex", "rrf"]

# A distinctive query for each document of the tiny corpus: its words occur in that document only.
DISTINCTIVE = [
    ("sourdough loaves and cinnamon buns", "bakery.txt"),
    ("steam locomotive over the viaduct", "railway.txt"),
    ("lava from the eruption", "volcano.txt"),
    ("newspapers and a reader's card", "library.txt"),
]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_corpus):
    folder = tmp_path_factory.mktemp("tiny-docs")
    for name, text in tiny_corpus.items():
        (folder / name).write_bytes(text.encode("utf-8"))
    return folder


@pytest.fixture(scope="module")
def tiny_index_dir(tmp_path_factory, tiny_folder):
    """One index of the tiny corpus, built."""
    index_dir = tmp_path_factory.mktemp("tiny-index")
    rag.Index.build(tiny_folder, index_dir=index_dir, progress=False)
    return index_dir


@pytest.fixture(scope="module")
def tiny_index(tiny_index_dir):
    """{fusion: Index} over the tiny corpus's index."""
    return {fusion: rag.Index.open(tiny_index_dir, fusion=fusion) for fusion in FUSIONS}


def bm25(query: str, docs: list[list[str]], i: int, k1: float = 1.5, b: float = 0.75) -> float:
    """BM25 as Lucene scores it (bm25s's default), written out: the reference for the lexical scores."""
    avgdl = sum(map(len, docs)) / len(docs)
    score = 0.0
    for t in set(terms(query)):
        df = sum(t in d for d in docs)
        if df == 0:
            continue
        tf = docs[i].count(t)
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        score += idf * tf / (tf + k1 * (1 - b + b * len(docs[i]) / avgdl))
    return score


def test_tiny_corpus_is_one_chunk_per_document(tiny_index):
    index = tiny_index["convex"]
    assert sorted(c.doc_id for c in index.passages) == [
        "bakery.txt",
        "library.txt",
        "railway.txt",
        "volcano.txt",
    ]


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize(("query", "expected"), DISTINCTIVE)
def test_distinctive_query_finds_its_document_first(tiny_index, fusion, query, expected):
    index = tiny_index[fusion]
    hits = index.search(query, k=4)
    assert index.passages[hits[0].row].doc_id == expected
    assert len({h.row for h in hits}) == 4
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize(("query", "expected"), DISTINCTIVE)
def test_hand_worked_scores(tiny_index, query, expected):
    convex, rrf = tiny_index["convex"], tiny_index["rrf"]
    top = convex.search(query, k=4)[0]
    chunk = convex.passages[top.row]
    # dense: the cosine of the two unit vectors, computed here independently
    (qv,), (cv,) = embed([query]), embed([chunk.embedding_text])
    assert top.dense == pytest.approx(float(qv @ cv), abs=1e-4)
    # lexical: BM25 of the query's stemmed words, the only document that has them
    docs = [terms(c.embedding_text) for c in convex.passages]
    assert top.lexical == pytest.approx(bm25(query, docs, top.row), rel=1e-4)
    assert all(bm25(query, docs, i) == 0 for i in range(len(docs)) if i != top.row)
    # second stage: plus the best cosine of one of its sentences (vectors from the passage's own pass)
    _, sentence_vecs = encode_passages([chunk.embedding_text], [chunk.sentence_spans])
    best_sentence = retrieval.SENTENCE_WEIGHT * float((sentence_vecs @ qv).max())
    # convex: w * cosine + (1 - w) * BM25 / best BM25, and this hit has the best BM25
    fused = retrieval.DENSE_WEIGHT * top.dense + (1 - retrieval.DENSE_WEIGHT) * 1.0
    assert top.score == pytest.approx(fused + best_sentence, abs=2e-3)  # sentence vectors are float16
    # rrf: first in both rankings, so 1/(K+1) twice
    rrf_score = 2 / (retrieval.RRF_K + 1) + best_sentence
    assert rrf.search(query, k=1)[0].score == pytest.approx(rrf_score, abs=2e-3)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 10])
def test_k_is_respected(tiny_index, fusion, k):
    hits = tiny_index[fusion].search("a volcano near the railway", k=k)
    assert len(hits) == min(k, 4)
    assert len({h.row for h in hits}) == len(hits)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_query_with_no_known_word_still_ranks_by_meaning(tiny_index, fusion):
    # no word of the query is in the corpus: BM25 has nothing, the dense ranking carries it
    hits = tiny_index[fusion].search("magma", k=4)
    assert len(hits) == 4 and all(h.lexical == 0 for h in hits)
    assert tiny_index[fusion].passages[hits[0].row].doc_id == "volcano.txt"


def test_a_name_misspelt_by_one_letter_is_known_and_one_no_document_holds_is_not(tiny_index_dir):
    index = rag.Index.open(tiny_index_dir)
    assert index.knows("Ashford") and not index.knows("Zanzibar")
    # one letter swapped, added, left out, changed; in a hyphenated name, each part on its own
    for slip in ("Ashfrod", "Kelbyy", "Vaiduct", "Glen-Valey", "Crossants", "Sourdoigh"):
        assert index.knows(slip), slip
    # two slips, or a short word (one letter from many others), is another name
    for other in ("Ashfxrx", "Kelbxyz", "Kelb", "Glen-Vxlxy"):
        assert not index.knows(other), other
    answer = rag.ask("Which viaduct do trains cross between Ashfrod and Zanzibar?", index=index)
    assert answer.abstained and answer.reason == "They never mention Zanzibar."


def test_a_name_typed_with_or_without_its_accents_is_one_name(tmp_path):
    source = tmp_path / "docs"
    source.mkdir()
    (source / "reformation.txt").write_text(
        "The Peasants' War\n\nThomas Müntzer preached in Mühlhausen before the battle of Frankenhausen.\n",
        encoding="utf-8",
    )
    (source / "havana.txt").write_text(
        "Old Havana\n\nThe statue of Jose Marti stands in Parque Central, near the Gran Teatro.\n",
        encoding="utf-8",
    )
    index = rag.open_index(source=source, index_dir=tmp_path / "index", progress=False)
    # written with accents in one place and without in the other, both ways round
    for typed, held in (("Muntzer", "reformation.txt"), ("Martí", "havana.txt")):
        assert index.knows(typed), typed
        assert index.passages[index.search(typed, k=1)[0].row].doc_id == held
    answer = rag.ask("Where did Muntzer preach?", index=index)
    assert not (answer.abstained and "never mention" in (answer.reason or ""))


def test_unknown_fusion_is_refused(tiny_index_dir):
    with pytest.raises(ValueError, match="fusion"):
        rag.Index.open(tiny_index_dir, fusion="max")


def test_retrieve_returns_citations_that_point_into_the_source(tiny_index, tiny_folder):
    citations = rag.retrieve("Where does the steam train run?", k=3, index=tiny_index["convex"])
    assert len(citations) == 3
    assert citations[0].source == "railway.txt"
    assert citations[0].title == "The Glen Valley Railway"
    for c in citations:
        assert (tiny_folder / c.source).read_bytes().decode("utf-8")[c.start : c.end] == c.text
        assert c.answer is None
    assert [c.score for c in citations] == sorted((c.score for c in citations), reverse=True)


@pytest.mark.parametrize(
    "query",
    [
        "Northeast Asian Automotive Research Institute",
        "sister cities of Changchun auto clusters",
        "FAW 14th Five-Year Plan",
        "zebra crossing",
    ],
)
def test_retrieve_on_the_seeds_cites_exact_offsets(seeds_index, query):
    citations = rag.retrieve(query, k=5, index=seeds_index)
    assert len(citations) == 5
    for c in citations:
        text = (SEEDS / c.source).read_bytes().decode("utf-8")
        assert text[c.start : c.end] == c.text
    assert [c.score for c in citations] == sorted((c.score for c in citations), reverse=True)


def test_retrieve_uses_the_configured_index(seeds_env):
    (first,) = rag.retrieve("Northeast Asian Automotive Research Institute", k=1)
    assert first.source == "000_6fce77a59fee8010.txt"


@pytest.mark.parametrize(
    ("query", "k"), [("", 5), ("   ", 5), ("x" * 2001, 5), ("volcano", 0), ("volcano", -1)]
)
def test_retrieve_refuses_bad_input(tiny_index, query, k):
    with pytest.raises(ValueError):
        rag.retrieve(query, k=k, index=tiny_index["convex"])


def _harbour_index(tmp_path, overlap_tokens: int) -> rag.Index:
    from rag.config import ChunkSettings

    text = "Harbour Notes\n\n" + " ".join(
        f"The harbour crane number {n} lifted {n * 7} containers of copper ore onto the ship."
        for n in range(12)
    )
    docs = [make_document("harbour.txt", text + "\n")]
    settings = ChunkSettings(max_tokens=60, overlap_tokens=overlap_tokens)
    return rag.open_index(documents=docs, index_dir=tmp_path / "index", chunking=settings, progress=False)


def _repeated(index, hits) -> float:
    """The largest share of a hit's text that better hits of its document already hold."""
    spans = [(index.passages[h.row].start, index.passages[h.row].end) for h in hits]
    shares = [
        sum(max(0, min(b, d) - max(a, c)) for c, d in spans[:n]) / (b - a) for n, (a, b) in enumerate(spans)
    ]
    return max(shares)


QUERY = "harbour crane number 5 lifted 35 containers"


def test_a_passage_mostly_in_a_better_one_of_its_document_gives_way(tmp_path, monkeypatch):
    index = _harbour_index(tmp_path, overlap_tokens=40)  # neighbours share two thirds of their text
    distinct = index.search(QUERY, k=3)
    assert len(distinct) == 3 and _repeated(index, distinct) <= retrieval.MAX_REPEATED
    # without the rule the same ranking would spend slots on text the first passage already holds
    monkeypatch.setattr(type(index), "_distinct", lambda self, ranked, k: ranked[:k])
    assert _repeated(index, index.search(QUERY, k=3)) > retrieval.MAX_REPEATED


def test_a_passage_that_shares_only_its_seams_keeps_its_slot(tmp_path, monkeypatch):
    index = _harbour_index(tmp_path, overlap_tokens=20)  # a sentence of 3 at each seam
    hits = index.search(QUERY, k=3)
    monkeypatch.setattr(type(index), "_distinct", lambda self, ranked, k: ranked[:k])
    ranking = index.search(QUERY, k=3)
    assert 0 < _repeated(index, ranking) <= retrieval.MAX_REPEATED  # they do share seams
    assert hits == ranking  # the ranking as it is: each passage has its own to say


@pytest.mark.slow
def test_a_question_is_embedded_by_the_onnx_encoder_exactly_as_by_sentence_transformers(
    tmp_path, monkeypatch
):
    from rag import embedding

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path))
    embedding.query_encoder.cache_clear()
    try:
        encoder = embedding.query_encoder()
        assert encoder is not None and (embedding.encoder_dir() / "model.onnx").is_file()
        assert embedding.encoder_dir().is_relative_to(tmp_path)
        texts = ["Who runs the bakery?", "steam " * 300, "火山最后一次喷发是什么时候？", "a"]
        np.testing.assert_allclose(encoder.encode(texts), embed(texts), atol=1e-5)
        # on one thread (beside Milvus Lite) too
        np.testing.assert_allclose(embedding.embed_query(texts[0], threads=1), embed(texts[:1])[0], atol=1e-5)
    finally:
        embedding.query_encoder.cache_clear()


@pytest.mark.slow
def test_a_fresh_process_answers_without_importing_torch(seeds_index_dir):
    import subprocess
    import sys

    from rag.embedding import query_encoder

    assert query_encoder() is not None  # the encoder is cached on this machine, as after a first answer
    code = (
        "import sys, rag; "
        f"index = rag.open_index(index_dir={str(seeds_index_dir)!r}, source={str(SEEDS)!r}, progress=False); "
        "answer = rag.ask('Where is FAW based?', index=index); "
        "print(bool(answer.citations), 'torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.split() == ["True", "False", "False"], out.stderr[-2000:]
