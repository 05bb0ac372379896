"""The reader and the reply, through public entry points, on passages written for these tests."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from rag import Document, ask, open_index
from rag.chunking import chunk_document
from rag.question import message_text, question_kind, read_question
from rag.reader import Reader

MUSEUM = (
    "The Harbour Museum opened in 1921 in the old customs house of Port Elm. It was founded by Mara Quill, "
    "a ship builder who gave the town her collection of ship models. Today the museum welcomes about "
    "40,000 visitors a year."
)
ORCHARD = (
    "Lindell Orchard grows apples and pears on the hills above the river Tarn. The orchard was planted "
    "by the Becker family, who still run its cider press every autumn."
)


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader()


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who founded the Harbour Museum?", "Mara Quill"),
        ("When did the Harbour Museum open?", "1921"),
        ("How many visitors does the museum welcome a year?", "40,000"),
        ("Where is the Harbour Museum?", "Port Elm"),
    ],
)
def test_the_reader_points_at_the_words_that_answer(reader, question, expected):
    spans = reader.read(question, [MUSEUM])
    best = spans[0]
    assert expected in MUSEUM[best.start : best.end]
    assert len(MUSEUM[best.start : best.end].split()) <= len(expected.split()) + 4  # a span, not a sentence


def test_spans_are_best_first_probabilities_with_offsets_into_their_own_passage(reader):
    passages = [ORCHARD, MUSEUM]
    spans = reader.read("Who planted Lindell Orchard?", passages, top=5)
    assert spans and spans[0].passage == 0 and "Becker" in ORCHARD[spans[0].start : spans[0].end]
    assert [s.score for s in spans] == sorted((s.score for s in spans), reverse=True)
    for s in spans:
        assert 0.0 < s.score <= 1.0 and 0.0 <= s.no_answer <= 1.0 and s.score + s.no_answer <= 1.0 + 1e-6
        assert 0 <= s.start < s.end <= len(passages[s.passage])


def test_the_passage_that_holds_the_answer_wins_among_distractors(reader):
    spans = reader.read(
        "Who founded the Harbour Museum?", [ORCHARD, ORCHARD.replace("Becker", "Ross"), MUSEUM]
    )
    assert spans[0].passage == 2


def test_a_long_passage_is_read_in_windows_and_offsets_stay_exact(reader):
    filler = " ".join(
        f"Row {i} of the ledger lists grain, salt and rope sold at the quay." for i in range(60)
    )
    passage = f"{filler} {MUSEUM}"
    assert len(passage.split()) > 3 * reader.max_len  # more words than three windows hold
    best = reader.read("Who founded the Harbour Museum?", [passage])[0]
    assert passage[best.start : best.end].strip(" ,.") == "Mara Quill"


def test_a_question_longer_than_a_window_is_still_read(reader):
    # a question of more pieces than a window holds used to crash the tokenizer's windowing
    question = "In the town where ships were built and models were kept, " * 12 + "who founded the museum?"
    spans = reader.read(question, [MUSEUM, ORCHARD])
    assert spans and all(0 <= s.start < s.end for s in spans)


def test_the_reader_reads_nothing_from_nothing(reader):
    assert reader.read("Who?", []) == []
    assert reader.read("   ", [MUSEUM]) == []


class ScriptedLogits:
    """A stand-in for the model: every piece gets a start and an end logit from ``starts`` and ``ends``
    ({piece id: logit}), the rest a low one."""

    def __init__(self, starts: dict[int, float], ends: dict[int, float]):
        self.starts, self.ends = starts, ends

    def run(self, outputs, feed):
        ids = feed["input_ids"]
        starts = np.vectorize(lambda i: self.starts.get(int(i), -5.0))(ids).astype(np.float32)
        ends = np.vectorize(lambda i: self.ends.get(int(i), -5.0))(ids).astype(np.float32)
        return [starts, ends]


def test_a_span_never_runs_from_one_line_into_the_next():
    # a line and the heading after it: the most probable start and end lie either side of the break
    passage = "The toll was paid at the old bridge.\n\nNorth Gate"
    reader = Reader()
    piece = {w: reader._tokenizer.token_to_id(w) for w in ("old", "bridge", "gate")}
    reader._session = ScriptedLogits({piece["old"]: 9.0}, {piece["gate"]: 9.0, piece["bridge"]: 8.0})
    best = reader.read("Where was the toll paid?", [passage])[0]
    assert passage[best.start : best.end] == "old bridge"


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m eval.train_reader"):
        Reader(tmp_path).read("Who?", [MUSEUM])


@pytest.fixture(scope="module")
def town_index(tmp_path_factory):
    docs = [
        Document("museum.txt", "The Harbour Museum", None, f"The Harbour Museum\n\n{MUSEUM}\n"),
        Document("orchard.txt", "Lindell Orchard", None, f"Lindell Orchard\n\n{ORCHARD}\n"),
    ]
    return open_index(documents=docs, index_dir=tmp_path_factory.mktemp("town"), progress=False)


def test_the_reply_gives_the_short_answer_then_its_sentence_and_cites_it(town_index):
    answer = ask("Who founded the Harbour Museum?", index=town_index)
    assert not answer.abstained and answer.short_answer == "Mara Quill"
    first, rest = answer.text.split("\n\n", 1)
    assert first == "Mara Quill."
    assert "founded by Mara Quill" in rest and rest.endswith("[1]")
    cited = answer.citations[0]
    assert cited.source == "museum.txt" and cited.answer == "Mara Quill"
    assert 0.0 < answer.confidence <= 1.0


def test_a_question_the_documents_do_not_answer_is_declined_with_related_passages(town_index):
    answer = ask("What is the boiling point of liquid nitrogen?", index=town_index)
    assert answer.abstained and answer.short_answer is None
    assert answer.text.startswith("The documents don't say.")
    assert answer.citations and not re.search(r"\[\d+\]", answer.text)


def test_a_reply_declines_under_the_calibrated_certainty(town_index, tmp_path):
    import json
    import shutil

    from rag.answering import answer
    from rag.reader import MODEL_DIR

    question = "Who founded the Harbour Museum?"
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copy(MODEL_DIR / name, tmp_path / name)
    calibration = {"retrieval_weight": 0.0, "similarity_weight": 0.0, "no_answer_weight": 0.0}
    (tmp_path / "calibration.json").write_text(json.dumps({**calibration, "threshold": -50.0}))
    sure = answer(question, history=None, k=3, index=town_index, reader=Reader(tmp_path))
    assert not sure.abstained and sure.short_answer == "Mara Quill"
    # the same span, and a threshold just above its log-probability: declined
    (tmp_path / "calibration.json").write_text(
        json.dumps({**calibration, "threshold": math.log(sure.confidence) + 0.01})
    )
    unsure = answer(question, history=None, k=3, index=town_index, reader=Reader(tmp_path))
    assert unsure.abstained and unsure.text.startswith("The documents don't say.")
    # a weight on the passage's similarity to the question lifts it back over that threshold
    (tmp_path / "calibration.json").write_text(
        json.dumps({**calibration, "similarity_weight": 1.0, "threshold": math.log(sure.confidence) + 0.01})
    )
    assert not answer(question, history=None, k=3, index=town_index, reader=Reader(tmp_path)).abstained


class CountingReader(Reader):
    """The shipped reader, counting the passages it is given."""

    passages_read = 0

    def read(self, question, passages, *, top=5):
        self.passages_read += len(passages)
        return super().read(question, passages, top=top)


def test_a_passage_that_cannot_win_is_left_unread_and_the_choice_is_the_same(town_index, tmp_path):
    import json
    import shutil

    from rag.answering import choose, evidence
    from rag.reader import MODEL_DIR

    question = "Who founded the Harbour Museum?"
    reader = CountingReader()
    q, hits, _, spans = evidence(question, history=None, k=3, index=town_index, reader=reader)
    assert len(hits) == 2 and reader.passages_read == 1
    everything = reader.read(q.text, [town_index.passages[h.row].text for h in hits], top=None)
    best = choose(spans, hits, reader.retrieval_weight)
    assert best == choose(everything, hits, reader.retrieval_weight)
    assert town_index.passages[hits[best.passage].row].text[best.start : best.end] == "Mara Quill"
    evidence(question, history=None, k=3, index=town_index, reader=reader, every=True)
    assert reader.passages_read == 1 + 2 + 2  # the first ask, the read above, and every passage now
    # with no weight on retrieval, any passage could hold a more probable span: both are read
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copy(MODEL_DIR / name, tmp_path / name)
    (tmp_path / "calibration.json").write_text(json.dumps({"retrieval_weight": 0.0}))
    unweighted = CountingReader(tmp_path)
    evidence(question, history=None, k=3, index=town_index, reader=unweighted)
    assert unweighted.passages_read == 2


def test_a_follow_up_is_retrieved_with_the_question_before_it(town_index):
    history = [
        {"role": "user", "content": "Who planted Lindell Orchard?"},
        {"role": "assistant", "content": "The Becker family."},
    ]
    q = read_question("What does it grow?", history)
    assert q.text == "What does it grow?" and q.query.startswith("Who planted Lindell Orchard?")
    answer = ask("What does it grow?", history=history, index=town_index)
    assert answer.citations[0].source == "orchard.txt"
    assert "apples" in (answer.short_answer or "")


def test_a_long_supporting_sentence_is_cut_around_the_answer(tmp_path):
    clauses = ", ".join(f"the {w} wing" for w in "north south east west upper lower inner outer".split() * 4)
    text = f"The Quarry Hall was designed by Ines Valk, who drew {clauses} and the gardens around them.\n"
    index = open_index(documents=[Document("hall.txt", "Quarry Hall", None, text)], index_dir=tmp_path / "i")
    answer = ask("Who designed the Quarry Hall?", index=index)
    assert answer.short_answer == "Ines Valk"
    support = answer.text.split("\n\n", 1)[1]
    assert support.endswith("… [1]") and len(support.split()) <= 45
    assert "Ines Valk" in support


@pytest.mark.parametrize(
    ("quarters", "question"),
    [  # the answer ends the first piece; it begins the second
        (14, "Which architect did the hall committee choose?"),
        (15, "Which architect did the committee choose to design the new river library?"),
    ],
)
def test_a_sentence_cut_across_passages_is_quoted_whole(tmp_path, quarters, question):
    # one sentence too long for one passage: the chunker cuts it into two pieces, in two passages
    sides = "north south east west upper lower inner outer".split() * 2
    towns = ", ".join(f"the {w} quarter of Elm" for w in sides[:quarters])
    text = (
        f"Over three winters the hall committee toured {towns} before it chose the architect Ines Valk "
        "to design the new river library.\n"
    )
    doc = Document("hall.txt", "Elm Hall", None, text)
    pieces = sorted({(s.start, s.end) for passage in chunk_document(doc) for s in passage.sentences})
    assert len(pieces) == 2
    cut = pieces[0][1]
    index = open_index(documents=[doc], index_dir=tmp_path / "i")
    answer = ask(question, index=index)
    assert answer.short_answer == "Ines Valk"
    support = answer.text.split("\n\n", 1)[1]
    assert support.startswith("…") and support.endswith("the new river library. [1]")
    quote = support.removeprefix("…").removesuffix(" [1]")
    assert text.index(quote) < cut < text.index(quote) + len(quote)  # both pieces, as the document has them
    assert len(support.split()) <= 45


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("When was the institute founded?", "date"),
        ("In what year did it open?", "date"),
        ("Who signed the agreement?", "person"),
        ("How many projects were signed?", "number"),
        ("Where was the conference held?", "place"),
        ("Why did the delegation visit?", "explain"),
        ("What did the secretary stress?", "phrase"),
    ],
)
def test_question_kind(question, kind):
    assert question_kind(question) == kind


def test_message_text_reads_strings_and_content_blocks():
    assert message_text("plain") == "plain"
    assert message_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "a\nb"
    assert message_text(None) == ""
