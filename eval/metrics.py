"""Scoring functions: pure, no model, no I/O; from ``rag`` only the citation mark format (``rag.types``).

Exact match and F1 follow the official SQuAD v1.1 evaluation script; the rest (containment accuracy,
retrieval rank, abstention, percentiles) are defined here and documented where they make a choice.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rag.types import marks_in, without_marks

# A chat reply longer than this does not count as an answer even if it contains the gold string:
# otherwise pasting a whole passage would score as "correct".
MAX_REPLY_WORDS = 60

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation, drop a/an/the, collapse white space.

    The steps run in the official script's order; punctuation goes before articles, so "the-end"
    becomes "theend" and keeps its "the".
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall over the normalised strings (multiset overlap).

    As in the official script, no common token gives 0.0, even when both sides normalise to nothing.
    """
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def best_exact_match(prediction: str, golds: Iterable[str]) -> float:
    """The best exact match over the gold answers (0.0 when there are none)."""
    return max((exact_match(prediction, g) for g in golds), default=0.0)


def best_f1(prediction: str, golds: Iterable[str]) -> float:
    """The best token F1 over the gold answers (0.0 when there are none)."""
    return max((token_f1(prediction, g) for g in golds), default=0.0)


def strip_marks(text: str) -> str:
    """Remove citation marks like ``[1]`` so their digits never count as answer tokens."""
    return without_marks(text)


def word_count(text: str) -> int:
    """Words in a reply, not counting citation marks."""
    return len(strip_marks(text).split())


def contains_answer(reply: str, golds: Iterable[str]) -> bool:
    """Whether some normalised gold answer occurs in the normalised reply, as whole words.

    Word boundaries keep "1" from matching inside "10" or "may" inside "mayor". They are "no letter or
    digit on either side" rather than spaces, because SQuAD normalisation keeps non-ASCII punctuation:
    "‘one pillar’" must still contain "one pillar". A gold answer that normalises to nothing (e.g. "The")
    is skipped, since the empty string is in everything.
    """
    normalized_reply = normalize_answer(strip_marks(reply))
    for gold in golds:
        norm = normalize_answer(gold)
        if norm and re.search(rf"(?<!\w){re.escape(norm)}(?!\w)", normalized_reply):
            return True
    return False


def answer_correct(
    reply: str, golds: Sequence[str], *, abstained: bool, max_words: int = MAX_REPLY_WORDS
) -> bool:
    """Answer accuracy: not abstained, at most ``max_words`` words, and contains a gold answer."""
    if abstained or not golds:
        return False
    return word_count(reply) <= max_words and contains_answer(reply, golds)


def cited_sources(marks: Sequence[int], sources: Sequence[str]) -> list[str]:
    """The sources that a reply's marks cite (``[n]`` -> ``sources[n-1]``), in order.

    Marks outside 1..len(sources) are ignored: they point at nothing, so they cite nothing.
    """
    cited: list[str] = []
    for n in marks:
        if 1 <= n <= len(sources) and sources[n - 1] not in cited:
            cited.append(sources[n - 1])
    return cited


def invalid_marks(reply: str, citations: int) -> int:
    """How many ``[n]`` marks in ``reply`` point at no citation (n outside 1..``citations``)."""
    return sum(not 1 <= n <= citations for n in marks_in(reply))


def gold_rank(sources: Sequence[str], gold: str | None) -> int | None:
    """1-based rank of the first source equal to ``gold``; None when absent or when there is no gold."""
    if gold is None:
        return None
    for rank, source in enumerate(sources, start=1):
        if source == gold:
            return rank
    return None


def hit_at(rank: int | None, k: int) -> bool:
    """Whether the gold source is among the top ``k``."""
    return rank is not None and rank <= k


def reciprocal_rank(rank: int | None) -> float:
    """1/rank, or 0.0 when the gold source was not retrieved (the usual MRR convention)."""
    return 0.0 if rank is None else 1.0 / rank


@dataclass(frozen=True)
class AbstentionScores:
    """How well the system declined exactly the unanswerable questions.

    ``precision`` is None when it never abstained; ``recall`` is None when nothing was unanswerable.
    """

    abstained: int  # questions the system abstained on
    unanswerable: int  # questions with no answer in the corpus
    abstained_unanswerable: int  # both: correct abstentions
    wrongly_abstained: int  # answerable questions it abstained on
    precision: float | None
    recall: float | None


def abstention_scores(abstained: Sequence[bool], unanswerable: Sequence[bool]) -> AbstentionScores:
    """Abstention precision and recall from two parallel per-question flags."""
    if len(abstained) != len(unanswerable):
        raise ValueError(f"got {len(abstained)} abstention flags for {len(unanswerable)} questions")
    n_abstained = sum(abstained)
    n_unanswerable = sum(unanswerable)
    both = sum(a and u for a, u in zip(abstained, unanswerable, strict=True))
    return AbstentionScores(
        abstained=n_abstained,
        unanswerable=n_unanswerable,
        abstained_unanswerable=both,
        wrongly_abstained=n_abstained - both,
        precision=both / n_abstained if n_abstained else None,
        recall=both / n_unanswerable if n_unanswerable else None,
    )


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean, or None for no values (a metric over zero questions is undefined, not 0)."""
    values = list(values)
    return sum(values) / len(values) if values else None


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks.

    This is numpy.percentile's default ("linear") method: the value at position (n-1)*q/100 of the
    sorted values, interpolated between its neighbours. None for no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)
