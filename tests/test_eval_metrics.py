"""Scoring and data loading of ``python -m eval``, on hand-worked cases. No model is loaded."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field

import numpy as np
import pytest

from eval import metrics
from eval.data import EvalError, EvalItem, load_dataset, sample_items
from eval.run import ItemResult, score_item, summarize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Cat, sat!", "cat sat"),
        ("An apple a day", "apple day"),
        ("March 31, 2021.", "march 31 2021"),
        ("theory of the atom", "theory of atom"),  # "the" only as a whole word
        ("the-end", "theend"),  # punctuation goes first, so no article is left to remove
        ("  \n ", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert metrics.normalize_answer(text) == expected


def test_exact_match_and_f1_hand_worked():
    assert metrics.exact_match("The Cat.", "cat") == 1.0
    assert metrics.exact_match("cats", "cat") == 0.0
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down]; 2 common tokens.
    # precision 2/2, recall 2/3, F1 = 2 * 1 * 2/3 / (1 + 2/3) = 0.8
    assert metrics.token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    # x x y vs x y y: common = {x: 1, y: 1} = 2 tokens; P = R = 2/3, so F1 = 2/3
    assert metrics.token_f1("x x y", "x y y") == pytest.approx(2 / 3)


def test_f1_without_overlap_is_zero_even_for_two_empty_strings():
    assert metrics.token_f1("dog", "cat") == 0.0
    # The official script: both normalise to "", which is an exact match but has no common token.
    assert metrics.exact_match("the", "a") == 1.0
    assert metrics.token_f1("the", "a") == 0.0


def test_best_over_gold_answers():
    golds = ["Broncos", "Denver Broncos"]
    assert metrics.best_exact_match("Denver Broncos", golds) == 1.0
    assert metrics.token_f1("Denver Broncos", "Broncos") == pytest.approx(2 / 3)  # P 1/2, R 1
    assert metrics.best_f1("Denver Broncos", golds) == 1.0
    assert metrics.best_f1("anything", []) == 0.0


def test_containment_strips_citation_marks():
    reply = "It was signed on March 31, 2021 [1]."
    assert metrics.contains_answer(reply, ["march 31 2021"])
    # Without stripping, the mark's "1" would be a token and "1" would be "found".
    assert not metrics.contains_answer("It happened in 2021 [1].", ["1"])


def test_containment_matches_whole_tokens_only():
    assert metrics.contains_answer("About 10 people came.", ["10"])
    assert not metrics.contains_answer("About 10 people came.", ["1"])
    assert not metrics.contains_answer("The mayor spoke.", ["May"])
    # Curly quotes survive SQuAD normalisation; they still delimit words.
    assert metrics.contains_answer(
        "the \u2018one pillar, six pairs\u2019 strategy", ["one pillar, six pairs"]
    )
    assert not metrics.contains_answer("Anything at all.", ["The"])  # normalises to nothing


def test_answer_correct_word_limit_is_inclusive_and_ignores_marks():
    gold = ["Paris"]
    sixty = " ".join(["Paris"] + ["word"] * 59)
    assert metrics.word_count(sixty) == 60
    assert metrics.answer_correct(sixty, gold, abstained=False)
    assert metrics.answer_correct(sixty + " [1] [2]", gold, abstained=False)
    assert not metrics.answer_correct(sixty + " extra", gold, abstained=False)


def test_answer_correct_is_false_when_abstained_or_unanswerable():
    assert not metrics.answer_correct("Paris [1]", ["Paris"], abstained=True)
    assert not metrics.answer_correct("Paris [1]", [], abstained=False)


def test_cited_sources_maps_marks_and_ignores_out_of_range():
    sources = ["a.txt", "b.txt", "c.txt"]
    assert metrics.cited_sources([2, 1, 2, 7, 0], sources) == ["b.txt", "a.txt"]
    assert metrics.cited_sources([], sources) == []


def test_invalid_marks_counts_marks_naming_no_citation():
    assert metrics.invalid_marks("X [2] and Y [1][2], Z [7] [0].", 3) == 2
    assert metrics.invalid_marks("X [3]", 3) == 0
    assert metrics.invalid_marks("X [1]", 0) == 1


def test_gold_rank_hit_at_k_and_reciprocal_rank():
    sources = ["x", "g", "y", "g"]
    rank = metrics.gold_rank(sources, "g")
    assert rank == 2  # the first occurrence counts
    assert not metrics.hit_at(rank, 1)
    assert metrics.hit_at(rank, 5)
    assert metrics.reciprocal_rank(rank) == 0.5
    assert metrics.gold_rank(sources, "missing") is None
    assert metrics.gold_rank(sources, None) is None
    assert not metrics.hit_at(None, 5)
    assert metrics.reciprocal_rank(None) == 0.0


def test_abstention_precision_and_recall():
    # q1 unanswerable+abstained, q2 answerable+abstained, q3 unanswerable+answered, q4 answerable+answered
    scores = metrics.abstention_scores([True, True, False, False], [True, False, True, False])
    assert scores.precision == 0.5 and scores.recall == 0.5
    assert (scores.abstained, scores.unanswerable) == (2, 2)
    assert (scores.abstained_unanswerable, scores.wrongly_abstained) == (1, 1)


def test_abstention_zero_denominators_are_none():
    never = metrics.abstention_scores([False, False], [True, False])
    assert never.precision is None and never.recall == 0.0
    nothing_unanswerable = metrics.abstention_scores([True, False], [False, False])
    assert nothing_unanswerable.precision == 0.0 and nothing_unanswerable.recall is None
    empty = metrics.abstention_scores([], [])
    assert empty.precision is None and empty.recall is None
    with pytest.raises(ValueError, match="2 abstention flags for 1"):
        metrics.abstention_scores([True, False], [True])


def test_percentile_and_mean_hand_worked():
    assert metrics.mean([1, 0, 0, 1]) == 0.5
    assert metrics.mean([]) is None  # a metric over no questions is undefined, not 0
    values = [40, 10, 30, 20]  # sorted: 10 20 30 40
    assert metrics.percentile(values, 50) == 25  # position 1.5
    assert metrics.percentile(values, 95) == pytest.approx(38.5)  # position 2.85: 30 + 0.85 * 10
    assert metrics.percentile(values, 0) == 10
    assert metrics.percentile(values, 100) == 40
    assert metrics.percentile([7], 95) == 7
    assert metrics.percentile([], 50) is None
    with pytest.raises(ValueError, match="between 0 and 100"):
        metrics.percentile([1, 2], 101)


def test_percentile_matches_numpy_default():
    values = random.Random(1).sample(range(1000), 37)
    for q in (5, 50, 90, 95, 99):
        assert metrics.percentile(values, q) == pytest.approx(np.percentile(values, q))


@dataclass
class FakeCitation:
    source: str


@dataclass
class FakeAnswer:
    text: str
    abstained: bool = False
    citations: list[FakeCitation] = field(default_factory=list)
    short_answer: str | None = None
    marks: tuple[int, ...] = ()


def _item(id_, answers=("Paris",), source="france.txt"):
    return EvalItem(id=id_, question="q?", answers=tuple(answers), source=source, type="place")


def test_score_item_answerable():
    answer = FakeAnswer(
        text="The capital is Paris [2].",
        citations=[FakeCitation("other.txt"), FakeCitation("france.txt")],
        short_answer="Paris",
        marks=(2,),
    )
    r = score_item(_item("q1"), answer, 12.5)
    assert (r.accurate, r.correct, r.exact_match, r.f1) == (True, True, 1.0, 1.0)
    assert (r.gold_rank, r.gold_cited, r.cited_sources) == (2, True, ["france.txt"])


def test_score_item_falls_back_to_reply_without_marks():
    r = score_item(_item("q1"), FakeAnswer(text="Paris [1]", citations=[FakeCitation("x.txt")]), 1.0)
    assert r.prediction == "Paris"
    assert r.exact_match == 1.0
    assert r.gold_rank is None and r.gold_cited is False


def test_score_item_unanswerable_has_no_answer_scores():
    item = _item("u1", answers=(), source=None)
    r = score_item(item, FakeAnswer(text="I could not find that.", abstained=True), 3.0)
    assert r.correct and r.accurate is None and r.exact_match is None and r.gold_rank is None


def _result(id_, *, answerable=True, accurate=True, rank=1, abstained=False, latency=10.0):
    return ItemResult(
        id=id_, question="q", type=None, answerable=answerable, gold_answers=[], gold_source=None,
        prediction="", reply="", abstained=abstained, correct=bool(accurate), accurate=accurate if answerable
        else None, exact_match=1.0 if answerable else None, f1=0.5 if answerable else None,
        gold_rank=rank if answerable else None, gold_cited=answerable, cited_sources=[], citation_sources=[],
        latency_ms=latency,
    )  # fmt: skip


def test_summarize_excludes_unanswerable_from_answer_metrics():
    results = [
        _result("a", rank=1, latency=10),
        _result("b", rank=2, accurate=False, latency=20),
        _result("c", rank=None, accurate=False, abstained=True, latency=30),
        _result("d", rank=4, latency=40),
        _result("u", answerable=False, abstained=True, latency=1000),
    ]
    s = summarize(results, documents=3, passages=9, k=5)
    assert (s.n, s.answerable, s.unanswerable) == (5, 4, 1)
    assert s.accuracy == 0.5 and s.accurate == 2
    assert s.exact_match == 1.0 and s.f1 == 0.5
    assert s.hit_at_1 == 0.25 and s.hit_at_5 == 0.75
    assert s.mrr == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)
    assert s.abstention_precision == 0.5 and s.abstention_recall == 1.0 and s.wrongly_abstained == 1
    assert s.latency_p50_ms == 30  # over all five items, the unanswerable one included
    assert s.latency_p95_ms == pytest.approx(40 + 0.8 * 960)  # position 3.8 of 10 20 30 40 1000


def _qa(id_, question, *answers):
    return {"id": id_, "question": question, "answers": [{"text": a, "answer_start": 0} for a in answers]}


SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Super_Bowl_50",
            "paragraphs": [
                {
                    "context": "Super Bowl 50 was won by the Denver Broncos.",
                    # Annotators often agree: the duplicate answer is kept once.
                    "qas": [_qa("sb1", "Who won?", "Denver Broncos", "Denver Broncos", "Broncos")],
                },
                {"context": "A paragraph nobody asked about.", "qas": []},
            ],
        },
        {
            "title": "Paris",
            "paragraphs": [{"context": "Paris is in France.", "qas": [_qa("p1", "?", "Paris")]}],
        },
    ],
}


def test_load_squad(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD))
    ds = load_dataset(path)
    assert ds.format == "squad"
    assert ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # Every paragraph is indexed, including the one without questions.
    assert [p.id for p in ds.passages] == ["Super_Bowl_50#0", "Super_Bowl_50#1", "Paris#0"]
    assert ds.passages[0].title == "Super Bowl 50"
    assert ds.passages[1].text == "A paragraph nobody asked about."
    first, second = ds.items
    assert (first.id, first.source) == ("sb1", "Super_Bowl_50#0")
    assert first.answers == ("Denver Broncos", "Broncos")
    assert (second.id, second.source, second.answerable, second.history) == ("p1", "Paris#0", True, None)


def test_load_squad_reports_structure_errors(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"qas": []}]}]}))
    with pytest.raises(EvalError, match="article 'T' paragraph 0 has no 'context'"):
        load_dataset(path)


def _line(**overrides):
    item = {"id": "q1", "question": "When?", "answers": ["1999"], "source": "a.txt", "type": "date"}
    item.update(overrides)
    return json.dumps(item)


def test_load_jsonl(tmp_path):
    history = [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Ann [1]."}]
    lines = [
        _line(),
        "",  # blank lines are allowed
        _line(id="q2", history=history),
        _line(id="u1", answers=[], source=None, type="unanswerable"),
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ds = load_dataset(path)
    assert ds.format == "jsonl" and ds.passages == []
    assert [i.id for i in ds.items] == ["q1", "q2", "u1"]
    assert ds.items[0].answers == ("1999",) and ds.items[0].history is None
    assert ds.items[1].history == tuple(history)
    assert not ds.items[2].answerable and ds.items[2].source is None


def test_load_jsonl_single_line(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(_line() + "\n")
    assert [i.id for i in load_dataset(path).items] == ["q1"]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "q3", "question": ', r"qa\.jsonl:3: malformed JSON"),
        (_line(id="q1"), r"qa\.jsonl:3: duplicate id 'q1' \(first on line 1\)"),
        (_line(id="q3", type="colour"), r"qa\.jsonl:3: 'type' must be one of"),
        (_line(id="q3", answers=[], type="unanswerable"), r"qa\.jsonl:3: an unanswerable question"),
        (json.dumps({"id": "q3", "question": "?"}), r"qa\.jsonl:3: missing answers, source, type"),
        ("[1, 2]", r"qa\.jsonl:3: expected a JSON object"),
    ],
)
def test_load_jsonl_names_the_bad_line(tmp_path, bad_line, message):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join([_line(), _line(id="q2"), bad_line, _line(id="q4")]) + "\n")
    with pytest.raises(EvalError, match=message):
        load_dataset(path)


def test_load_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(EvalError, match="no data file at"):
        load_dataset(tmp_path / "nope.jsonl")
    for name, text in [("list.json", "[1, 2, 3]"), ("notes.txt", "plain text\n{}\n")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(EvalError, match="unknown format"):
            load_dataset(tmp_path / name)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(EvalError, match="no questions"):
        load_dataset(empty)


def test_sample_items_is_reproducible_and_keeps_file_order():
    items = [_item(f"q{i}") for i in range(20)]
    picked = sample_items(items, 5, seed=3)
    assert picked == sample_items(items, 5, seed=3)
    assert {i.id for i in picked} == {i.id for i in random.Random(3).sample(items, 5)}
    assert [int(i.id[1:]) for i in picked] == sorted(int(i.id[1:]) for i in picked)
    assert sample_items(items, 50) == items
    assert sample_items(items, None) == items
