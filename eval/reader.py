"""Score the reader alone, and fit its decline threshold: python -m eval.reader.

- ``python -m eval.reader`` reads every SQuAD v1.1 dev question with its gold paragraph (closed reading:
  no retrieval, never declining) and reports EM, F1 and the time to read one question.
- ``python -m eval.reader --calibrate`` fits the one threshold under which a reply declines, on the SQuAD
  *training* articles held out of training (never the dev file). Each sampled question goes through the
  whole pipeline (retrieval over all held-out paragraphs, then the reader) twice: with its gold
  paragraph in the index, and with it withheld. First the weight of a passage's retrieval score beside the
  reader's span log-probability when spans compete (the one whose chosen spans score the best F1 with the
  gold paragraph in the index). Then the certainty a reply declines under (see rag.answering.certainty):
  the chosen span's log-probability plus weights of its passage's similarity to the question and of its
  window's no-answer log-probability, and one threshold on it. The threshold declines at most MAX_DECLINED
  of the questions whose gold paragraph is there; of the weights on a small grid, the pair whose threshold
  declines the most withheld questions wins. All of it is written to ``calibration.json`` beside the model,
  with the figures it was fitted on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .data import load_dataset, sample_items
from .metrics import best_exact_match, best_f1

ROOT = Path(__file__).resolve().parent.parent
SQUAD_DEV = ROOT.parent / "shared" / "benchmarks" / "squad-v1.1-dev.json"


def closed_reading(
    data: Path, *, limit: int | None, model: Path | None, progress: bool = True, **window: int
) -> dict:
    """EM/F1 of the reader's best span in each question's gold paragraph (``window``: ``max_len`` and
    ``stride`` of the reader, else its defaults)."""
    from tqdm import tqdm

    from rag.reader import MODEL_DIR, Reader

    dataset = load_dataset(data)
    items = sample_items(dataset.items, limit)
    text = {p.id: p.text for p in dataset.passages}
    reader = Reader(model or MODEL_DIR, **window)
    reader.warm_up()
    em, f1, seconds = [], [], 0.0
    for item in tqdm(items, desc="reading", unit="q", disable=not progress):
        t = time.perf_counter()
        spans = reader.read(item.question, [text[item.source]], top=1)
        seconds += time.perf_counter() - t
        found = text[item.source][spans[0].start : spans[0].end] if spans else ""
        em.append(best_exact_match(found, item.answers))
        f1.append(best_f1(found, item.answers))
    return {
        "data": str(data),
        "questions": len(items),
        "exact_match": round(100 * float(np.mean(em)), 1),
        "f1": round(100 * float(np.mean(f1)), 1),
        "ms_per_question": round(1000 * seconds / len(items), 1),
    }


def heldout_file(train: Path, model: Path) -> Path:
    """The held-out training articles (as recorded in the model's training.json), as a SQuAD file."""
    from rag.config import get_settings

    from .train_reader import load_articles, split_articles

    stages = json.loads((model / "training.json").read_text(encoding="utf-8"))["stages"]
    splits = {(st["recipe"]["seed"], st["recipe"]["holdout_articles"]) for st in stages}
    if len(splits) != 1:  # then some stage trained on articles another held out
        raise SystemExit(f"the training stages of {model} held out different articles: {sorted(splits)}")
    ((seed, holdout),) = splits
    _, held = split_articles(load_articles(train), seed=seed, holdout=holdout)
    out = get_settings().index_dir.parent / "eval-cache" / "squad-train-heldout.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"version": "1.1", "data": held}, ensure_ascii=False)
    if not out.exists() or out.read_text(encoding="utf-8") != body:
        out.write_text(body, encoding="utf-8")
    return out


WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0)  # retrieval weights tried for choosing a span
# weights tried, to decline: of the passage's similarity to the question, of the window's no-answer log-p
SIMILARITY_WEIGHTS = (0.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0)
NO_ANSWER_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
MAX_DECLINED = 0.08  # the threshold declines at most this share of held-out questions whose answer is there


def calibrate(train: Path, *, limit: int, k: int, model: Path, write: bool = True) -> dict:
    from tqdm import tqdm

    from rag.answering import certainty, choose, evidence, trimmed
    from rag.reader import Reader

    from .run import Withheld, open_eval_index

    dataset = load_dataset(heldout_file(train, model))
    items = sample_items(dataset.items, limit, seed=1)
    index = open_eval_index(dataset)
    reader = Reader(model)
    # per question: None (declined before reading) or (spans, hits, {span: (EM, F1) of its answer})
    gold, held = [], []
    for item in tqdm(items, desc="asking with and without the gold paragraph", unit="q"):
        for where, out in ((index, gold), (Withheld(index, item.source), held)):
            # every passage read: spans are chosen below under other retrieval weights than the reader's
            _, hits, unknown, spans = evidence(
                item.question, history=None, k=k, index=where, reader=reader, every=True
            )
            if unknown or not hits or not spans:
                out.append(None)
                continue
            quality = {}
            for sp in spans:
                text = index.passages[hits[sp.passage].row].text
                short = text[slice(*trimmed(text, sp.start, sp.end))]
                quality[sp] = (best_exact_match(short, item.answers), best_f1(short, item.answers))
            out.append((spans, hits, quality))

    def chosen(questions, weight):  # (span, hit, EM, F1) of the span each reply gives; None: declined
        picks = []
        for q in questions:
            best = None if q is None else choose(q[0], q[1], weight)
            picks.append(None if best is None else (best, q[1][best.passage], *q[2][best]))
        return picks

    def f1(picks):
        return float(np.mean([0.0 if p is None else p[3] for p in picks]))

    weight = max(WEIGHTS, key=lambda x: f1(chosen(gold, x)))  # the best span choice, by F1
    g, w = chosen(gold, weight), chosen(held, weight)

    def sure(picks, sim, na):  # each reply's certainty as answering computes it; -inf: declined before
        cal = {"similarity_weight": sim, "no_answer_weight": na}
        return np.array([-np.inf if p is None else certainty(p[0], p[1], cal) for p in picks])

    fits = []  # (withheld declined, similarity weight, no-answer weight, threshold)
    for sim in SIMILARITY_WEIGHTS:
        for na in NO_ANSWER_WEIGHTS:
            answerable = np.sort(sure(g, sim, na))
            t = float(answerable[int(MAX_DECLINED * len(answerable))])  # declines at most MAX_DECLINED
            fits.append((float(np.mean(sure(w, sim, na) < t)), sim, na, t))
    _, sim, na, t = max(fits)
    answered = sure(g, sim, na) >= t
    em = np.array([0.0 if p is None else p[2] for p in g])
    f = np.array([0.0 if p is None else p[3] for p in g])
    figures = {
        "retrieval_weight": weight,
        "similarity_weight": sim,
        "no_answer_weight": na,
        "threshold": round(t, 4),
        "fitted_on": f"{len(items)} questions over the {len(dataset.passages)} paragraphs of the training "
        f"articles held out of training, k={k}, each asked with and without its gold paragraph",
        "answerable_declined": round(float(np.mean(~answered)) * 100, 1),
        "withheld_declined": round(float(np.mean(sure(w, sim, na) < t)) * 100, 1),
        "withheld_declined_by_span_score_alone": round(
            next(d for d, s_, n_, _ in fits if s_ == 0.0 and n_ == 0.0) * 100, 1
        ),
        "declined_before_reading": {
            "answerable": sum(p is None for p in g),
            "withheld": sum(p is None for p in w),
        },
        "exact_match": round(float(np.mean(np.where(answered, em, 0.0))) * 100, 1),
        "f1": round(float(np.mean(np.where(answered, f, 0.0))) * 100, 1),
        "exact_match_never_declining": round(float(np.mean(em)) * 100, 1),
        "f1_never_declining": round(float(np.mean(f)) * 100, 1),
        "f1_never_declining_by_weight": {str(x): round(f1(chosen(gold, x)) * 100, 1) for x in WEIGHTS},
    }
    if write:
        (model / "calibration.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


def main(argv: list[str] | None = None) -> None:
    from rag.reader import MODEL_DIR

    from .train_reader import DEFAULT_TRAIN

    p = argparse.ArgumentParser(prog="python -m eval.reader", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=SQUAD_DEV, help="SQuAD JSON for closed reading (default: dev)"
    )
    p.add_argument("--limit", type=int, default=None, help="a seeded sample of this many questions")
    p.add_argument("--model", type=Path, default=MODEL_DIR)
    p.add_argument("--max-len", type=int, default=None, help="word pieces per window (default: the reader's)")
    p.add_argument("--stride", type=int, default=None, help="overlap of windows (default: the reader's)")
    p.add_argument("--calibrate", action="store_true", help="fit the decline threshold (see above)")
    p.add_argument("--train", type=Path, default=DEFAULT_TRAIN, help="squad-v1.1-train.json, for --calibrate")
    p.add_argument("--k", type=int, default=5, help="passages retrieved, for --calibrate")
    p.add_argument("--dry-run", action="store_true", help="with --calibrate: report, do not write")
    args = p.parse_args(argv)
    if args.calibrate:
        figures = calibrate(
            args.train, limit=args.limit or 1000, k=args.k, model=args.model, write=not args.dry_run
        )
    else:
        window = {n: v for n, v in (("max_len", args.max_len), ("stride", args.stride)) if v is not None}
        figures = closed_reading(args.data, limit=args.limit, model=args.model, **window)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
