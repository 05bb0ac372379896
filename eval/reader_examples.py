"""The reader's training examples (see :mod:`eval.train_reader` for what they are): SQuAD articles split
into training and held-out ones by a seeded draw, question + paragraph windows labelled with the answer's
pieces or "no answer", and length-bucketed batches."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

HOLDOUT_ARTICLES = 22  # about 5% of the 442 training articles


@dataclass(frozen=True)
class Recipe:
    seed: int = 13
    max_len: int = 128
    stride: int = 64
    questions: int = 34_000  # positives: one window per question
    skip: int = 0  # questions of the seeded draw left out first: a later stage trains on ones not yet seen
    window_negatives: float = 0.25  # of questions whose paragraph spans several windows: also one without it
    retrieved_negatives: float = 0.2  # share of questions that also give a BM25-retrieved paragraph
    batch: int = 32
    lr: float = 8e-5
    warmup: float = 0.06
    weight_decay: float = 0.01
    holdout_articles: int = HOLDOUT_ARTICLES


def load_articles(path: Path) -> list[dict]:
    if not path.is_file():
        sys.exit(f"no SQuAD training file at {path}: pass --train PATH (squad-v1.1-train.json)")
    with path.open(encoding="utf-8") as f:
        return json.load(f)["data"]


def split_articles(articles: list[dict], *, seed: int, holdout: int) -> tuple[list[dict], list[dict]]:
    """(training articles, held-out articles): a seeded draw of titles, the same for every run."""
    titles = sorted(a["title"] for a in articles)
    kept = set(random.Random(seed).sample(titles, holdout))
    return [a for a in articles if a["title"] not in kept], [a for a in articles if a["title"] in kept]


def _windows(tokenizer, questions, contexts, *, max_len, stride):
    return tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=max_len,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def label_window(enc, i: int, start_char: int, end_char: int) -> tuple[int, int]:
    """(start, end) piece of the answer in window i, or (0, 0) when the window does not hold all of it."""
    seq = enc.sequence_ids(i)
    offsets = enc["offset_mapping"][i]
    ctx = [t for t, s in enumerate(seq) if s == 1]
    if not ctx or offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:
        return 0, 0
    start = next(t for t in ctx if offsets[t][1] > start_char)
    end = next(t for t in reversed(ctx) if offsets[t][0] < end_char)
    return start, end


def build_examples(articles: list[dict], tokenizer, recipe: Recipe) -> list[tuple[list[int], int, int]]:
    """(input_ids, start, end) for every training example, in a seeded order."""
    import bm25s
    from tqdm import tqdm

    rng = random.Random(recipe.seed)
    paragraphs = [p["context"] for a in articles for p in a["paragraphs"]]
    items = []  # (question, paragraph index, answer start, answer text)
    for pi, p in enumerate(p for a in articles for p in a["paragraphs"]):
        for qa in p["qas"]:
            ans = qa["answers"][0]
            items.append((qa["question"], pi, ans["answer_start"], ans["text"]))
    rng.shuffle(items)
    items = items[recipe.skip : recipe.skip + recipe.questions]
    if not items:
        sys.exit(f"--skip {recipe.skip} leaves no training questions (there are {recipe.skip} or fewer)")
    # a question so long that a window has no more passage pieces than the overlap cannot be windowed
    lengths = tokenizer([q for q, *_ in items], add_special_tokens=False)["input_ids"]
    fits = [len(ids) + 3 + recipe.stride < recipe.max_len for ids in lengths]
    if not all(fits):
        print(f"left out {fits.count(False)} questions too long for windows of {recipe.max_len} pieces")
        items = [item for item, ok in zip(items, fits, strict=True) if ok]

    n_retrieved = int(len(items) * recipe.retrieved_negatives)
    negatives = []  # (question, paragraph text)
    if n_retrieved:
        print(f"BM25 over {len(paragraphs):,} training paragraphs for {n_retrieved:,} retrieved negatives")
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(paragraphs, stopwords="en", show_progress=False), show_progress=False)
        queries = items[:n_retrieved]
        hits, _ = retriever.retrieve(
            bm25s.tokenize([q for q, *_ in queries], stopwords="en", show_progress=False),
            k=min(4, len(paragraphs)),
            show_progress=False,
        )
        for (question, pi, _, answer), row in zip(queries, hits, strict=True):
            for hit in row:
                if hit != pi and answer.lower() not in paragraphs[hit].lower():
                    negatives.append((question, paragraphs[hit]))
                    break

    examples = []
    step = 2000
    for lo in tqdm(range(0, len(items), step), desc="word pieces (gold paragraphs)", unit_scale=step):
        chunk = items[lo : lo + step]
        enc = _windows(
            tokenizer,
            [q for q, *_ in chunk],
            [paragraphs[pi] for _, pi, *_ in chunk],
            max_len=recipe.max_len,
            stride=recipe.stride,
        )
        by_item: dict[int, list[int]] = {}
        for w, owner in enumerate(enc["overflow_to_sample_mapping"]):
            by_item.setdefault(owner, []).append(w)
        for owner, ws in by_item.items():
            _, _, a_start, a_text = chunk[owner]
            labelled = [(w, *label_window(enc, w, a_start, a_start + len(a_text))) for w in ws]
            pos = [x for x in labelled if x[1] > 0]
            if not pos:
                continue  # the answer straddles every window boundary (very rare): skip the question
            w, s, e = rng.choice(pos)
            examples.append((enc["input_ids"][w], s, e))
            neg = [x for x in labelled if x[1] == 0]
            if neg and rng.random() < recipe.window_negatives:
                examples.append((enc["input_ids"][rng.choice(neg)[0]], 0, 0))
    for lo in tqdm(range(0, len(negatives), step), desc="word pieces (retrieved negatives)", unit_scale=step):
        chunk = negatives[lo : lo + step]
        enc = _windows(
            tokenizer,
            [q for q, _ in chunk],
            [t for _, t in chunk],
            max_len=recipe.max_len,
            stride=recipe.stride,
        )
        by_item = {}
        for w, owner in enumerate(enc["overflow_to_sample_mapping"]):
            by_item.setdefault(owner, []).append(w)
        for ws in by_item.values():
            examples.append((enc["input_ids"][rng.choice(ws)], 0, 0))
    rng.shuffle(examples)
    return examples


def batches(examples, *, batch: int, seed: int) -> list[list[int]]:
    """Indices of examples per batch, length-bucketed (sorted within pools of 50 batches), in a seeded
    random order of batches."""
    rng = random.Random(seed + 1)
    order = list(range(len(examples)))
    pool = batch * 50
    out = []
    for lo in range(0, len(order), pool):
        part = sorted(order[lo : lo + pool], key=lambda i: len(examples[i][0]))
        out.extend(part[j : j + batch] for j in range(0, len(part), batch))
    rng.shuffle(out)
    return out


def collate(examples, idx, *, pad_id: int, sep_id: int):
    import torch

    rows = [examples[i] for i in idx]
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    for j, (toks, _, _) in enumerate(rows):
        ids[j, : len(toks)] = torch.tensor(toks)
        mask[j, : len(toks)] = 1
        sep = toks.index(sep_id) + 1  # pieces after the first [SEP] are the passage: segment 1
        types[j, sep : len(toks)] = 1
    starts = torch.tensor([r[1] for r in rows])
    ends = torch.tensor([r[2] for r in rows])
    return ids, mask, types, starts, ends
