"""ask() end to end on the seeds, with the real models: answers, abstentions, follow-ups, validation."""

from __future__ import annotations

import re

import pytest

import rag
from rag import Document, batches
from rag.config import MAX_QUESTION_CHARS, PROJECT_ROOT

SEEDS = PROJECT_ROOT / "seeds"
MAYOR = "Who is the Mayor of Changchun City?"
MAYOR_DOC = "003_77923ca0126b27a7.txt"
HISTORY = [
    {"role": "user", "content": MAYOR},
    {"role": "assistant", "content": "Wang Zilian."},
]
# the same conversation as Gradio's chatbot sends it: content as a list of blocks
GRADIO_HISTORY = [
    {"role": "user", "content": [{"type": "text", "text": MAYOR}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Wang Zilian."}]},
]
MARK = re.compile(r"\[(\d+)\]")

# Answerable and unanswerable questions alike, for the properties every reply must have.
QUESTIONS = [
    (MAYOR, None),
    ("Who is the CEO of Tesla?", None),
    ("What is the capital of France?", None),
    ("Which district leaders took part in the Jiaojiang delegation's inspection?", None),
    ("What kinds of cars make up FAW's product pattern?", None),
    ("Who delivered speeches at the opening ceremony of the 2023 conference?", None),
    ("Which province is Changchun in?", None),
    ("Tell me about the zebra crossing.", None),
    ("What did he preside over?", HISTORY),
    ("And who delivered a speech there?", GRADIO_HISTORY),
]


def test_answers_a_question_with_its_source(seeds_index):
    answer = rag.ask(MAYOR, index=seeds_index)
    assert not answer.abstained
    assert answer.short_answer == "Wang Zilian"
    assert "Wang Zilian" in answer.text
    assert answer.question_type == "person"
    first = answer.citations[0]
    assert first.source == MAYOR_DOC
    assert first.answer == "Wang Zilian"
    assert first.title == "Conference for the Promotion of Sister Cities of Changchun Auto Clusters Held"
    assert first.date == "2021-10-21"
    assert "[1]" in answer.text


def test_abstains_on_what_the_documents_never_mention(seeds_index):
    answer = rag.ask("Who is the CEO of Tesla?", index=seeds_index)
    assert answer.abstained
    assert answer.short_answer is None
    assert MARK.search(answer.text) is None
    assert "documents don't say" in answer.text
    assert "Tesla" in answer.text  # says what is missing
    # the passages are still offered, as related reading
    assert answer.citations and all(c.answer is None for c in answer.citations)


def test_follow_up_uses_the_history(seeds_index):
    # "there" is the conference the mayor of the previous turn presided over: only the history says which
    answer = rag.ask("And who delivered a speech there?", history=HISTORY, index=seeds_index)
    assert not answer.abstained
    assert answer.citations[0].source == MAYOR_DOC
    assert "Zhang Zhijun" in answer.text


def test_gradio_style_history_works_like_plain_messages(seeds_index):
    plain = rag.ask("And who delivered a speech there?", history=HISTORY, index=seeds_index)
    blocks = rag.ask("And who delivered a speech there?", history=GRADIO_HISTORY, index=seeds_index)
    assert blocks.citations[0].source == MAYOR_DOC
    assert blocks == plain


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("x" * (MAX_QUESTION_CHARS + 1), "2,001 characters long; the limit is 2,000"),
    ],
    ids=["empty", "whitespace", "too long"],
)
def test_bad_questions_raise_value_error_with_a_helpful_message(seeds_index, question, message):
    with pytest.raises(ValueError, match=message) as err:
        rag.ask(question, index=seeds_index)
    assert isinstance(err.value, rag.InvalidQuestion)


def test_a_question_at_the_length_limit_is_accepted(seeds_index):
    question = ("Who founded the institute? " * 100)[:MAX_QUESTION_CHARS]
    answer = rag.ask(question, index=seeds_index)
    assert answer.citations and answer.citations[0].source.startswith("000_")  # the institute's article


def test_a_question_must_be_text(seeds_index):
    with pytest.raises(ValueError, match="must be text"):
        rag.ask(None, index=seeds_index)


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one_raises_value_error(seeds_index, k):
    with pytest.raises(ValueError, match="k must be at least 1"):
        rag.ask(MAYOR, k=k, index=seeds_index)


@pytest.mark.parametrize(("question", "history"), QUESTIONS, ids=[q for q, _ in QUESTIONS])
def test_every_reply_is_short_and_cites_what_exists(seeds_index, question, history):
    answer = rag.ask(question, history=history, index=seeds_index)
    assert len(answer.text.split()) <= 60
    marks = [int(n) for n in MARK.findall(answer.text)]
    assert all(1 <= n <= len(answer.citations) for n in marks), (marks, len(answer.citations))
    assert 1 <= len(answer.citations) <= 5
    for c in answer.citations:
        assert (SEEDS / c.source).read_bytes().decode("utf-8")[c.start : c.end] == c.text
    if answer.abstained:
        assert marks == [] and answer.short_answer is None
    else:
        assert marks and answer.short_answer
        # the short answer is what the first citation marks (less any quotes or trailing punctuation)
        assert answer.short_answer in answer.citations[0].answer
        assert answer.short_answer in answer.text


def test_k_bounds_the_citations(seeds_index):
    answer = rag.ask(MAYOR, k=2, index=seeds_index)
    assert 1 <= len(answer.citations) <= 2
    assert answer.citations[0].source == MAYOR_DOC


def test_ask_opens_the_configured_index_without_rebuilding_it(seeds_env, monkeypatch):
    def no_embedding(texts, spans, **kwargs):
        raise AssertionError(f"the index was rebuilt: embedded {len(texts)} texts")

    monkeypatch.setattr(batches, "encode_passages", no_embedding)
    answer = rag.ask(MAYOR)
    assert answer.citations[0].source == MAYOR_DOC
    assert answer.short_answer == "Wang Zilian"


def test_ask_without_documents_says_where_it_looked(tmp_path):
    # the autouse fixture points RAG_SOURCE_DIR at a folder that does not exist
    with pytest.raises(rag.SourceNotFound, match=re.escape(str(tmp_path / "docs"))):
        rag.ask(MAYOR)


def test_every_entry_point_indexes_the_chat_uploads_too(tmp_path, tiny_source):
    index_dir = tmp_path / "index"
    (index_dir / "uploads").mkdir(parents=True)
    (index_dir / "uploads" / "lighthouse.txt").write_text(
        "The Lighthouse\n\nThe lighthouse on Cape Vell was lit in 1871 by keeper Ada Rowe.\n",
        encoding="utf-8",
    )
    index = rag.open_index(source=tiny_source, index_dir=index_dir, progress=False)
    ids = set(index.documents)
    assert "uploads/lighthouse.txt" in ids
    assert len(ids) == len(list(tiny_source.iterdir())) + 1
    answer = rag.ask("Who lit the lighthouse on Cape Vell?", index=index)
    assert answer.citations[0].source == "uploads/lighthouse.txt"


def test_an_index_is_built_then_opened_as_it_is(tmp_path):
    docs = [
        Document("lighthouse.txt", "The Lighthouse", None, "The lighthouse at Port Elm was built in 1871.")
    ]
    folder = tmp_path / "index"
    with pytest.raises(rag.IndexNotFound):
        rag.Index.open(folder)  # opening never builds
    assert not folder.exists()
    built = rag.Index.build(documents=docs, index_dir=folder, progress=False)
    written = sorted((p, p.stat().st_mtime_ns) for p in folder.rglob("*"))
    opened = rag.Index.open(folder)
    assert list(opened.passages) == list(built.passages)
    assert opened.ask("When was the lighthouse built?").short_answer == "1871"
    assert opened.retrieve("lighthouse", k=1)[0].source == "lighthouse.txt"
    assert sorted((p, p.stat().st_mtime_ns) for p in folder.rglob("*")) == written, "opening writes nothing"
