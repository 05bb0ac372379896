"""Command line: ``python -m eval [--data PATH] [--limit N] [--k K] [--quiet] [--json PATH] ...``.

Thin on purpose: parse arguments, call :func:`eval.run.run_eval`, print, and choose the exit code
(0 fine, 1 accuracy below ``--min-accuracy``, 2 bad input or a library error).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval.data import EvalError, load_dataset, sample_items
from eval.run import PROGRESS_MIN_ITEMS, ItemResult, Report, Summary, run_eval

DEFAULT_DATA = Path(__file__).resolve().parent / "qa.jsonl"
QUESTION_WIDTH = 50
ANSWER_WIDTH = 40
MAX_ID_WIDTH = 24


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        dataset = load_dataset(args.data)
        chosen = [item for item in dataset.items if args.lang is None or item.lang == args.lang]
        if not chosen:
            raise EvalError(f"no question of {args.data} is in language {args.lang!r}")
        items = sample_items(chosen, args.limit, seed=args.seed)
    except EvalError as e:
        return _error(str(e))

    try:
        from rag.__main__ import llm_settings
        from rag.errors import RagError
    except ImportError as e:
        return _error(f"cannot import the rag library: {e}")
    llm = None
    if args.llm:
        try:
            llm = llm_settings(args)
        except ValueError as e:
            return _error(str(e))
        if llm is None:
            return _error("--llm needs a server: set RAG_LLM_BASE_URL or pass --llm-base-url")

    rows = None if args.quiet else _RowPrinter(id_width=min(MAX_ID_WIDTH, max(len(i.id) for i in items)))
    try:
        report = run_eval(
            dataset,
            items,
            k=args.k,
            progress=args.quiet and len(items) >= PROGRESS_MIN_ITEMS,
            on_result=rows,
            llm=llm,
            withhold_gold=args.withhold_gold,
        )
    except (EvalError, RagError) as e:
        return _error(str(e))
    except KeyboardInterrupt:
        return _error("interrupted", code=130)

    print(_format_summary(report), flush=True)

    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
        except OSError as e:
            return _error(f"cannot write {args.json}: {e.strerror}")

    if args.min_accuracy is not None:
        accuracy = report.summary.accuracy
        if accuracy is None:
            print(f"FAIL: no answerable questions, so accuracy cannot reach {args.min_accuracy:.1%}")
            return 1
        if accuracy < args.min_accuracy:
            print(f"FAIL: answer accuracy {accuracy:.1%} is below --min-accuracy {args.min_accuracy:.1%}")
            return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval",
        description="Ask every question of a question set and score answers, citations and latency.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="PATH",
        default=DEFAULT_DATA,
        help="eval/qa.jsonl-style JSON Lines or SQuAD v1.1 JSON (default: the project's eval/qa.jsonl)",
    )
    parser.add_argument(
        "--limit", type=_positive_int, metavar="N", help="evaluate N questions sampled reproducibly"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for --limit (default: 0)")
    parser.add_argument(
        "--lang",
        metavar="CODE",
        help='only the questions in this language (the "lang" of each line; default: all)',
    )
    parser.add_argument(
        "--k", type=_positive_int, default=5, help="passages retrieved per question (default: 5)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only the summary, not one row per question"
    )
    parser.add_argument(
        "--withhold-gold",
        action="store_true",
        help="ask each question as if its gold document were not indexed: how often does it decline?",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write a machine-readable report here")
    parser.add_argument(
        "--llm",
        action="store_true",
        help="score the generative path: a language model writes each answer (see the --llm-* options)",
    )
    parser.add_argument(
        "--min-accuracy",
        type=_fraction,
        metavar="X",
        help="exit with code 1 when answer accuracy is below X (a fraction, 0..1)",
    )
    from rag.__main__ import add_llm_options

    add_llm_options(parser, switch_off=False)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"is a fraction between 0 and 1 (e.g. 0.8), got {value}")
    return value


def _error(message: str, *, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


class _RowPrinter:
    """Prints one fixed-width row per result, with the header before the first one.

    The header waits for the first result so that it follows, not precedes, any index-building output.
    """

    def __init__(self, *, id_width: int) -> None:
        self.id_width = max(id_width, 2)
        self.printed_header = False

    def __call__(self, result: ItemResult) -> None:
        if not self.printed_header:
            header = self._row("id", "ok", "EM", "F1", "rank", "ms", "question", "answer")
            print(header)
            print("-" * len(header))
            self.printed_header = True
        print(
            self._row(
                result.id,
                "ok" if result.correct else "x",
                "-" if result.exact_match is None else f"{result.exact_match:.0f}",
                "-" if result.f1 is None else f"{result.f1:.2f}",
                "-" if result.gold_rank is None else str(result.gold_rank),
                f"{result.latency_ms:.0f}",
                result.question,
                "(abstained)" if result.abstained else result.prediction,
            ),
            flush=True,
        )

    def _row(self, *cells: str) -> str:
        widths = (self.id_width, 2, 2, 4, 4, 6, QUESTION_WIDTH, ANSWER_WIDTH)
        aligns = "<<>>>><<"  # text left, numbers right
        parts = [f"{_truncate(c, w):{a}{w}}" for c, w, a in zip(cells, widths, aligns, strict=True)]
        return "  ".join(parts).rstrip()


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())  # a newline in a reply would break the row
    return text if len(text) <= width else text[: width - 3] + "..."


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _score(value: float | None) -> str:
    # EM and F1 are conventionally reported as mean x 100 without a percent sign (SQuAD).
    return "n/a" if value is None else f"{value * 100:.1f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _format_summary(report: Report) -> str:
    s: Summary = report.summary
    hit5 = "hit@5" if s.k >= 5 else f"hit@5 (only {s.k} retrieved)"
    lines = [
        ("items", f"{s.n} ({s.answerable} answerable, {s.unanswerable} unanswerable)"),
        ("index", f"{s.documents} documents, {s.passages} passages; k={s.k}"),
        ("short answer: exact match", _score(s.exact_match)),
        ("short answer: F1", _score(s.f1)),
        (
            "reply holds the gold",
            f"{_pct(s.accuracy)} ({s.accurate}/{s.answerable}; lenient: reply <= 60 words)",
        ),
        ("hit@1", _pct(s.hit_at_1)),
        (hit5, _pct(s.hit_at_5)),
        ("MRR", "n/a" if s.mrr is None else f"{s.mrr:.3f}"),
        ("gold source cited", _pct(s.gold_cited)),
        (
            "abstention precision",
            f"{_pct(s.abstention_precision)} ({s.abstained_unanswerable}/{s.abstained})",
        ),
        ("abstention recall", _pct(s.abstention_recall)),
        ("unanswerable abstained", f"{s.abstained_unanswerable}/{s.unanswerable}"),
        ("answerable abstained", f"{s.wrongly_abstained} (wrongly)"),
        ("latency", f"p50 {_ms(s.latency_p50_ms)}, p95 {_ms(s.latency_p95_ms)} (linear interpolation)"),
    ]
    if s.llm is not None:
        m = s.llm
        lines += [
            ("language model", m.model),
            ("model asked", f"{m.asked} (the rest abstained before it)"),
            ("model answered", f"{m.generated}/{m.asked} (fell back to the extract: {m.fell_back})"),
            ("grounded", f"{m.grounded}/{m.asked} (cite a passage given)"),
            ("model declined", f"{m.declined}/{m.asked}"),
            ("disagreed with extract", f"{m.disagreed}/{m.asked}"),
            ("invalid [n] shown", f"{m.invalid_marks_shown} ({m.dropped_marks} dropped before showing)"),
        ]
    width = max(len(label) for label, _ in lines)
    mode = f"{report.format}{', generative' if s.llm else ''}{', gold withheld' if report.withheld else ''}"
    title = f"== summary: {report.data} ({mode})"
    note = "answer quality and retrieval are over answerable questions; latency over all"
    body = "\n".join(f"{label:<{width}}  {value}" for label, value in lines)
    return f"\n{title}\n{body}\n({note})"


if __name__ == "__main__":
    sys.exit(main())
