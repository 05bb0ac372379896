"""The evaluation loop: open the index, ask every question, score it, and summarise.

``rag`` is imported inside the functions that need it, so the scoring and loading modules (and their
tests) work without the library or its models.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval import metrics
from eval.data import Dataset, EvalError, EvalItem

if TYPE_CHECKING:
    from rag import Answer, GeneratedAnswer, LLMSettings

# With --quiet, a progress bar is worth showing only when the run takes a while.
PROGRESS_MIN_ITEMS = 20


@dataclass(frozen=True)
class ItemResult:
    """How the system did on one question. Answer-quality fields are None for unanswerable items."""

    id: str
    question: str
    type: str | None
    answerable: bool
    gold_answers: list[str]
    gold_source: str | None
    prediction: str  # short_answer, else the reply without its [n] marks
    reply: str  # the full chat reply, as returned
    abstained: bool
    correct: bool  # answerable: accurate; unanswerable: abstained
    accurate: bool | None  # containment accuracy (see metrics.answer_correct)
    exact_match: float | None
    f1: float | None
    gold_rank: int | None  # 1-based rank of the gold source among the citations
    gold_cited: bool | None  # gold source referenced by an [n] mark in the reply
    cited_sources: list[str]
    citation_sources: list[str]
    latency_ms: float
    invalid_marks: int = 0  # [n] marks in the reply that point at no citation
    # the generative path only (python -m eval --llm); None on the extractive one
    generated: bool | None = None  # the model wrote the reply (False: it failed, the extracted one is shown)
    grounded: bool | None = None  # ... and it cites a passage given
    declined: bool | None = None  # the model said the passages do not hold the answer
    disagrees: bool | None = None  # the reply lacks the extracted short answer
    dropped_marks: int | None = None  # marks naming no passage, removed before the reply was shown
    asked_model: bool | None = None  # False when the extractive path abstained, so the model was not asked


@dataclass(frozen=True)
class Summary:
    """Aggregate scores. Rates are fractions in 0..1 (None when their denominator is zero)."""

    n: int
    answerable: int
    unanswerable: int
    documents: int
    passages: int
    k: int
    accuracy: float | None
    accurate: int
    exact_match: float | None
    f1: float | None
    hit_at_1: float | None
    hit_at_5: float | None
    mrr: float | None
    gold_cited: float | None
    abstained: int
    abstained_unanswerable: int
    wrongly_abstained: int
    abstention_precision: float | None
    abstention_recall: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    llm: LLMSummary | None = None  # only for the generative path


@dataclass(frozen=True)
class LLMSummary:
    """How the language model did, over the questions it was asked (the extractive path answered)."""

    model: str
    asked: int
    generated: int
    fell_back: int
    grounded: int
    declined: int
    disagreed: int
    dropped_marks: int
    invalid_marks_shown: int  # over all replies: should be 0


@dataclass(frozen=True)
class Report:
    data: str
    format: str
    summary: Summary
    items: list[ItemResult]
    withheld: bool = False  # each question was asked with its gold document withheld

    def to_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "format": self.format,
            "n": self.summary.n,
            "gold_withheld": self.withheld,
            "summary": asdict(self.summary),
            "items": [asdict(item) for item in self.items],
        }


def squad_cache_dir(dataset: Dataset) -> Path:
    """Where a SQuAD file's index lives: keyed by the file's hash, so reruns reuse it."""
    from rag.config import get_settings

    return get_settings().index_dir.parent / "eval-cache" / f"squad-{dataset.sha256[:12]}"


def open_eval_index(dataset: Dataset, *, progress: bool = True) -> Any:
    """The default index for our question set; for SQuAD, an index of all its paragraphs."""
    from rag import Document, open_index

    if dataset.format != "squad":
        return open_index(progress=progress)
    documents = [Document(id=p.id, title=p.title, date=None, text=p.text) for p in dataset.passages]
    return open_index(documents=documents, index_dir=squad_cache_dir(dataset), progress=progress)


def score_item(
    item: EvalItem,
    answer: Answer | GeneratedAnswer,
    latency_ms: float,
    *,
    generated: GeneratedAnswer | None = None,
) -> ItemResult:
    """Score one answer against its item; ``generated`` is the generative path's answer, when it ran
    (``answer`` is then the reply shown: the generated one, or the extracted one when no model wrote it).
    A generated reply has no short answer of its own, so EM and F1 score its text."""
    sources = [c.source for c in answer.citations]
    cited = metrics.cited_sources(answer.marks, sources)
    short = None if generated is not None and generated.generated else answer.short_answer
    # Falling back to the reply, its [n] marks would add stray digit tokens to EM/F1.
    prediction = short or metrics.strip_marks(answer.text).strip()
    if item.answerable:
        accurate = metrics.answer_correct(answer.text, item.answers, abstained=answer.abstained)
        em: float | None = metrics.best_exact_match(prediction, item.answers)
        f1: float | None = metrics.best_f1(prediction, item.answers)
        rank = metrics.gold_rank(sources, item.source)
        gold_cited: bool | None = item.source in cited
    else:
        accurate, em, f1, rank, gold_cited = None, None, None, None, None
    return ItemResult(
        id=item.id,
        question=item.question,
        type=item.type,
        answerable=item.answerable,
        gold_answers=list(item.answers),
        gold_source=item.source,
        prediction=prediction,
        reply=answer.text,
        abstained=answer.abstained,
        correct=bool(accurate) if item.answerable else answer.abstained,
        accurate=accurate,
        exact_match=em,
        f1=f1,
        gold_rank=rank,
        gold_cited=gold_cited,
        cited_sources=cited,
        citation_sources=sources,
        latency_ms=latency_ms,
        invalid_marks=metrics.invalid_marks(answer.text, len(sources)),
        **(_generation_fields(generated) if generated is not None else {}),
    )


def _generation_fields(g: GeneratedAnswer) -> dict[str, Any]:
    asked = not g.extracted.abstained
    return {
        "generated": g.generated,
        "grounded": g.grounded,
        "declined": g.declined,
        "disagrees": g.disagrees,
        "dropped_marks": len(g.dropped),
        "asked_model": asked,
    }


def summarize(
    results: list[ItemResult], *, documents: int, passages: int, k: int, model: str | None = None
) -> Summary:
    """Means over answerable items for answer and retrieval quality; latency over all items. ``model``
    names the language model of a generative run, whose own figures are added."""
    answerable = [r for r in results if r.answerable]
    abstention = metrics.abstention_scores(
        [r.abstained for r in results], [not r.answerable for r in results]
    )
    latencies = [r.latency_ms for r in results]
    return Summary(
        n=len(results),
        answerable=len(answerable),
        unanswerable=len(results) - len(answerable),
        documents=documents,
        passages=passages,
        k=k,
        accuracy=metrics.mean(float(bool(r.accurate)) for r in answerable),
        accurate=sum(bool(r.accurate) for r in answerable),
        exact_match=metrics.mean(r.exact_match or 0.0 for r in answerable),
        f1=metrics.mean(r.f1 or 0.0 for r in answerable),
        hit_at_1=metrics.mean(float(metrics.hit_at(r.gold_rank, 1)) for r in answerable),
        hit_at_5=metrics.mean(float(metrics.hit_at(r.gold_rank, 5)) for r in answerable),
        mrr=metrics.mean(metrics.reciprocal_rank(r.gold_rank) for r in answerable),
        gold_cited=metrics.mean(float(bool(r.gold_cited)) for r in answerable),
        abstained=abstention.abstained,
        abstained_unanswerable=abstention.abstained_unanswerable,
        wrongly_abstained=abstention.wrongly_abstained,
        abstention_precision=abstention.precision,
        abstention_recall=abstention.recall,
        latency_p50_ms=metrics.percentile(latencies, 50),
        latency_p95_ms=metrics.percentile(latencies, 95),
        llm=None if model is None else _llm_summary(results, model),
    )


def _llm_summary(results: list[ItemResult], model: str) -> LLMSummary:
    asked = [r for r in results if r.asked_model]
    return LLMSummary(
        model=model,
        asked=len(asked),
        generated=sum(bool(r.generated) for r in asked),
        fell_back=sum(not r.generated for r in asked),
        grounded=sum(bool(r.grounded) for r in asked),
        declined=sum(bool(r.declined) for r in asked),
        disagreed=sum(bool(r.disagrees) for r in asked),
        dropped_marks=sum(r.dropped_marks or 0 for r in asked),
        invalid_marks_shown=sum(r.invalid_marks for r in results),
    )


def run_eval(
    dataset: Dataset,
    items: list[EvalItem],
    *,
    k: int = 5,
    progress: bool = False,
    on_result: Callable[[ItemResult], None] | None = None,
    llm: LLMSettings | None = None,
    withhold_gold: bool = False,
) -> Report:
    """Ask each item's question once (after one untimed warm-up) and score the answers.

    ``withhold_gold`` asks each question as if its gold document were not in the index (SQuAD: its
    paragraph), to measure how often the reply declines when the answer is not there to find.

    With ``llm``, the generative path answers (:func:`rag.generate_answer`) and is scored the same way.
    ``on_result`` sees each result as soon as it is scored, so rows can be printed while the run goes.
    Library errors propagate; a question the library rejects raises :class:`EvalError` naming the item.
    """
    from rag import ask, generate_answer

    if not items:
        raise EvalError("no questions to evaluate")
    index = open_eval_index(dataset)
    # The first ask() loads models and warms caches; timing it would inflate p95 on short runs.
    _ask(ask, items[0], k=k, index=index)
    if llm is not None:
        _ask(generate_answer, items[0], k=k, index=index, llm=llm)  # and loads the model into the server

    results: list[ItemResult] = []
    bar = _progress_bar(len(items)) if progress else None
    try:
        for item in items:
            where = Withheld(index, item.source) if withhold_gold and item.source else index
            start = time.perf_counter()
            if llm is None:
                answer, generated = _ask(ask, item, k=k, index=where), None
            else:
                generated = _ask(generate_answer, item, k=k, index=where, llm=llm)
                answer = generated if generated.generated else generated.extracted
            latency_ms = (time.perf_counter() - start) * 1000
            result = score_item(item, answer, latency_ms, generated=generated)
            results.append(result)
            if on_result is not None:
                on_result(result)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    model = None if llm is None else f"{llm.model or '(first listed)'} at {llm.base_url}"
    summary = summarize(results, documents=index.num_documents, passages=index.num_passages, k=k, model=model)
    return Report(
        data=str(dataset.path), format=dataset.format, summary=summary, items=results, withheld=withhold_gold
    )


class Withheld:
    """An index that never returns the passages of one document: the question is asked as if that
    document had not been indexed (its words still count in the lexical statistics, a small difference)."""

    EXTRA = 8  # passages fetched beyond k, so that k remain once the document's are dropped

    def __init__(self, index: Any, source: str):
        self._index = index
        self._source = source

    def search(self, query: str, *, k: int = 5, **options: Any) -> list[Any]:
        return self._without(self._index.search(query, k=k + self.EXTRA, **options), k)

    def search_multilingual(self, queries: list[str], *, k: int = 5, **options: Any) -> list[Any]:
        return self._without(self._index.search_multilingual(queries, k=k + self.EXTRA, **options), k)

    def _without(self, hits: list[Any], k: int) -> list[Any]:
        return [h for h in hits if self._index.passages[h.row].doc_id != self._source][:k]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)


def _ask(ask: Callable[..., Any], item: EvalItem, *, k: int, index: Any, **options: Any) -> Any:
    history = [dict(turn) for turn in item.history] if item.history else None
    try:
        return ask(item.question, history=history, k=k, index=index, **options)
    except ValueError as e:
        # ask() rejects empty or over-long questions; say which item, since the data is at fault.
        raise EvalError(f"question {item.id!r}: {e}") from e


def _progress_bar(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="q", desc="asking", leave=False)
