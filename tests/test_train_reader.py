"""Training the reader, in miniature: a few steps on a handful of SQuAD-shaped examples (CI never trains
the shipped model)."""

from __future__ import annotations

import json

import pytest
import torch

from eval import train_reader
from rag.reader import Reader

ARTICLES = [
    {
        "title": f"Town_{t}",
        "paragraphs": [
            {
                "context": f"The mill of Town {t} was built in {1800 + t} by {name}. It ground wheat for the "
                f"valley until the flood of {1900 + t}, when the river took its wheel.",
                "qas": [
                    {
                        "id": f"{t}a",
                        "question": f"Who built the mill of Town {t}?",
                        "answers": [{"text": name, "answer_start": 0}],
                    },
                    {
                        "id": f"{t}b",
                        "question": f"When was the mill of Town {t} built?",
                        "answers": [{"text": str(1800 + t), "answer_start": 0}],
                    },
                ],
            }
        ],
    }
    for t, name in enumerate(["Ada Brook", "Ben Hale", "Cora Lind", "Dan Moss"])
]


@pytest.fixture
def squad(tmp_path):
    for article in ARTICLES:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                a = qa["answers"][0]
                a["answer_start"] = p["context"].index(a["text"])
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"data": ARTICLES}), encoding="utf-8")
    return path


def _run(squad, work, out, *extra):
    train_reader.main(
        [
            "--train",
            str(squad),
            "--work",
            str(work),
            "--out",
            str(out),
            "--questions",
            "6",
            "--batch",
            "2",
            "--holdout-articles",
            "1",
            "--save-every",
            "1",
            *extra,
        ]
    )


def test_held_out_articles_are_a_seeded_draw_that_training_never_sees():
    articles = [{"title": f"T{i}"} for i in range(40)]
    train, held = train_reader.split_articles(articles, seed=3, holdout=5)
    again = train_reader.split_articles(articles, seed=3, holdout=5)[1]
    assert [a["title"] for a in held] == [a["title"] for a in again] and len(held) == 5
    assert not {a["title"] for a in train} & {a["title"] for a in held} and len(train) == 35


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_same_weights_and_exports_a_reader(squad, tmp_path, capsys):
    _run(squad, tmp_path / "a", tmp_path / "reader-a")
    _run(squad, tmp_path / "b", tmp_path / "reader-b", "--stop-after", "1")
    assert "stopped at step 1" in capsys.readouterr().out
    assert not (tmp_path / "reader-b").exists()
    _run(squad, tmp_path / "b", tmp_path / "reader-b")
    assert "resuming at step 1" in capsys.readouterr().out
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] > 1
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])

    info = json.loads((tmp_path / "reader-b" / "training.json").read_text())
    (stage,) = info["stages"]
    assert stage["recipe"]["questions"] == 6 and stage["no_answer_examples"] >= 0
    text = ARTICLES[0]["paragraphs"][0]["context"]
    spans = Reader(tmp_path / "reader-b").read("Who built the mill?", [text])
    assert spans and all(0 <= s.start < s.end <= len(text) for s in spans)


@pytest.mark.slow
def test_a_checkpoint_of_another_recipe_is_refused(squad, tmp_path):
    _run(squad, tmp_path / "w", tmp_path / "r", "--stop-after", "1")
    with pytest.raises(SystemExit, match="another recipe"):
        _run(squad, tmp_path / "w", tmp_path / "r", "--lr", "1e-3")


@pytest.mark.slow
def test_a_second_stage_starts_from_the_first_and_trains_on_questions_it_did_not_see(squad, tmp_path, capsys):
    _run(squad, tmp_path / "one", tmp_path / "reader-one", "--questions", "3")
    first = tmp_path / "one" / "model"  # the finished stage, as a starting point for another
    assert (first / "config.json").is_file()
    _run(
        squad,
        tmp_path / "two",
        tmp_path / "reader-two",
        "--base",
        str(first),
        "--skip",
        "3",
        "--questions",
        "3",
    )
    info = json.loads((tmp_path / "reader-two" / "training.json").read_text())
    one, two = info["stages"]  # the first stage's record comes along with its model
    assert one["recipe"]["skip"] == 0 and two["base"] == str(first) and two["recipe"]["skip"] == 3
    with pytest.raises(SystemExit, match="leaves no training questions"):
        _run(squad, tmp_path / "three", tmp_path / "r3", "--skip", "100")
