"""Fit the answer ranker (rag/ranker.json) on SQuAD: python -m eval.train_ranker.

The SQuAD v1.1 dev articles are split in two by their position in the file: questions of the even
articles train, questions of the odd ones are held out to report on. Every question goes through the real
pipeline (retrieval over all 2,067 paragraphs, sentence scoring, candidate spans); a candidate is a
positive when its SQuAD F1 against a gold answer is at least POSITIVE_F1. The model is an L2-regularised
logistic regression fitted by Newton's method (a weight per feature: numpy is enough).
Nothing here reads our own questions.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

from rag.candidates import FEATURES

from .data import load_dataset
from .metrics import best_exact_match, best_f1, contains_answer
from .run import open_eval_index

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "benchmarks" / "squad-v1.1-dev.json"
POSITIVE_F1 = 0.8
L2 = 1.0
# abstain below the probability that loses this share of the held-out replies holding the answer
MAX_USEFUL_LOST = 0.01


def collect(items, index, *, k: int):
    """Feature rows and labels of every candidate, grouped by question."""
    from rag.answering import evidence

    groups = []
    for item in items:
        _, _, _, ranked = evidence(item.question, history=None, k=k, index=index)  # unranked spans
        if not ranked:
            groups.append((np.zeros((0, 0), dtype=np.float32), np.zeros(0), [], item))
            continue
        x = np.vstack([c.features for c in ranked])
        y = np.array([best_f1(c.text, item.answers) >= POSITIVE_F1 for c in ranked], dtype=np.float64)
        groups.append((x, y, [c.text for c in ranked], item))
    return groups


def fit(x: np.ndarray, y: np.ndarray, *, l2: float = L2, steps: int = 30) -> np.ndarray:
    w = np.zeros(x.shape[1])
    reg = l2 * np.eye(x.shape[1])
    reg[-1, -1] = 0.0  # the bias feature is last and not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + reg @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def evaluate(groups, w: np.ndarray) -> dict:
    em, f1 = [], []
    for x, _, texts, item in groups:
        if not texts:
            em.append(0.0)
            f1.append(0.0)
            continue
        best = int(np.argmax(x @ w))
        em.append(best_exact_match(texts[best], item.answers))
        f1.append(best_f1(texts[best], item.answers))
    return {"em": 100 * float(np.mean(em)), "f1": 100 * float(np.mean(f1))}


def top_probabilities(items, index, w: np.ndarray, *, k: int, drop_gold: bool) -> list[tuple]:
    """For each question, the best candidate's probability and whether the reply built on it (the span
    and its sentence) holds a gold answer: once for the READ_TOP best sentences and once for the
    WIDER_READ ones (read when the first falls below the cut, see :func:`rag.answering.choose`). With
    ``drop_gold`` the gold paragraph is left out of the retrieved passages: the question becomes one the
    documents cannot answer, yet its topic is still there - the hard case for abstention."""
    from rag.answering import WIDER_READ
    from rag.candidates import READ_TOP, candidates, score_sentences, sentence_text
    from rag.embedding import embed
    from rag.question import read_question

    def best(spans, item) -> tuple[float, bool]:
        if not spans:
            return 0.0, False
        z = np.vstack([c.features for c in spans]) @ w
        top = spans[int(np.argmax(z))]
        # the reply is the span and the sentence it came from: it helps when either holds the answer
        sentence = sentence_text(top.sentence, index)
        useful = not drop_gold and contains_answer(f"{top.text} {sentence}", item.answers)
        return float(1 / (1 + np.exp(-z.max()))), useful

    out = []
    for item in items:
        q = read_question(item.question, None, index)
        qvec = embed([q.query])[0]
        hits = index.search(q.query, k=k + 10, query_vector=qvec)
        hits = [h for h in hits if not (drop_gold and index.chunks[h.chunk].doc_id == item.source)][:k]
        sentences = score_sentences(q, qvec, hits, index)
        first = best(candidates(q, sentences, index), item)
        wider = (
            best(candidates(q, sentences, index, top=WIDER_READ), item)
            if len(sentences) > READ_TOP
            else first
        )
        out.append((*first, *wider))
    return out


def _final(row: tuple, cut: float) -> tuple[float, bool]:
    """The probability and usefulness of the reply given at this cut: the wider reading's below it."""
    return (row[0], row[1]) if row[0] >= cut else (row[2], row[3])


def threshold(answerable: list[tuple], unanswerable: list[tuple]) -> dict:
    """The highest probability cut that costs at most MAX_USEFUL_LOST of the replies holding the answer."""
    useful_count = sum(1 for row in answerable if row[1] or row[3])
    cut = 0.0
    for c in sorted({p for row in answerable for p in (row[0], row[2])}, reverse=True):
        lost = sum(1 for row in answerable if (row[1] or row[3]) and not _useful(row, c))
        if lost <= MAX_USEFUL_LOST * useful_count:
            cut = c
            break
    return {
        "abstain_below": math.floor(cut * 1e4) / 1e4,  # rounded down: the cut itself answers
        "useful_replies_lost": round(
            float(np.mean([not _useful(r, cut) for r in answerable if r[1] or r[3]]))
            if useful_count
            else 0.0,
            3,
        ),
        "answerable_abstained": round(float(np.mean([_final(r, cut)[0] < cut for r in answerable])), 3),
        "unanswerable_abstained": round(float(np.mean([_final(r, cut)[0] < cut for r in unanswerable])), 3),
    }


def _useful(row: tuple, cut: float) -> bool:
    p, ok = _final(row, cut)
    return ok and p >= cut


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.train_ranker", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train", type=int, default=3000, help="training questions (default 3000)")
    parser.add_argument("--heldout", type=int, default=1000, help="held-out questions (default 1000)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "rag" / "ranker.json"
    )
    args = parser.parse_args(argv)

    dataset = load_dataset(args.data)
    articles = list(dict.fromkeys(p.id.split("#")[0] for p in dataset.passages))
    train_articles = set(articles[0::2])
    train_items = [i for i in dataset.items if i.source and i.source.split("#")[0] in train_articles]
    held_items = [i for i in dataset.items if i.source and i.source.split("#")[0] not in train_articles]
    rng = random.Random(0)
    train_items = rng.sample(train_items, min(args.train, len(train_items)))
    held_items = rng.sample(held_items, min(args.heldout, len(held_items)))
    index = open_eval_index(dataset)
    started = time.perf_counter()
    train = collect(train_items, index, k=args.k)
    held = collect(held_items, index, k=args.k)
    x = np.vstack([g[0] for g in train if len(g[2])])
    y = np.concatenate([g[1] for g in train if len(g[2])])
    print(
        f"{len(train_items)} training questions, {len(x)} candidates ({int(y.sum())} positive), "
        f"collected in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    w = fit(x, y)
    train_scores, held_scores = evaluate(train, w), evaluate(held, w)
    abstention = threshold(
        top_probabilities(held_items, index, w, k=args.k, drop_gold=False),
        top_probabilities(held_items, index, w, k=args.k, drop_gold=True),
    )
    model = {
        "features": list(FEATURES),
        "weights": [round(float(v), 5) for v in w],
        "abstain_below": abstention.pop("abstain_below"),
        "abstention_on_heldout": {
            **abstention,
            "unanswerable": "the same questions with their gold paragraph left out of the passages",
        },
        "trained_on": f"SQuAD v1.1 dev, {len(train_items)} questions of its {len(train_articles)} "
        f"even-numbered articles (seed 0); positive = F1 >= {POSITIVE_F1}; L2 {L2}",
        "heldout": {
            "questions": len(held_items),
            "articles": "the odd-numbered articles",
            "top_candidate_em": round(held_scores["em"], 1),
            "top_candidate_f1": round(held_scores["f1"], 1),
        },
        "train": {
            "top_candidate_em": round(train_scores["em"], 1),
            "top_candidate_f1": round(train_scores["f1"], 1),
        },
    }
    args.out.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    for name, weight in zip(FEATURES, w, strict=True):
        print(f"{name:16} {weight:+.3f}")
    print(json.dumps({k: v for k, v in model.items() if k not in ("features", "weights")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
