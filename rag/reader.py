"""Stage 7: read the retrieved passages and point at the words that answer - a trained span extractor.

The model (``rag/models/reader``, trained by ``python -m eval.train_reader``; see its model card) reads the
question and a window of a passage and gives every word piece a start and an end logit; the ``[CLS]`` piece
stands for "this window does not answer". Within a window, a softmax over its pieces (``[CLS]`` included)
turns each into a probability, so a span's score ``p(start) * p(end)`` is a probability in every window and
spans of different passages compare on one scale. Whether to answer at all is decided in
:mod:`rag.answering`, by one threshold on a certainty built on that score, fitted on held-out SQuAD
training articles (``calibration.json`` beside the model).

The model is an ONNX graph (weights stored in fp16, computed in fp32) run by onnxruntime, loaded on first
use.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from . import bert_onnx

MODEL_DIR = Path(__file__).resolve().parent / "models" / "reader"
MAX_ANSWER_PIECES = 30  # a span longer than this many word pieces is never an answer
TOP_PIECES = 20  # start and end candidates tried per window


@dataclass(frozen=True)
class Span:
    """Where a reader found an answer: ``passages[passage][start:end]``, with its probability ``score``
    and the probability ``no_answer`` that the same window holds no answer."""

    passage: int
    start: int
    end: int
    score: float
    no_answer: float


class Reader:
    """A span extractor over passages: ``Reader().read(question, passages)`` -> spans, best first.

    ``max_len`` word pieces per window (question included); a longer passage is read in windows that
    overlap by ``stride`` pieces (fewer when a long question leaves less room). Creating a Reader reads
    nothing; the model loads on the first read.
    """

    def __init__(
        self, path: Path | str = MODEL_DIR, *, max_len: int = 128, stride: int = 32, threads: int = 2
    ):
        self.path = Path(path)
        self.max_len = max_len
        self.stride = stride
        self.threads = threads
        self._lock = threading.Lock()

    @cached_property
    def calibration(self) -> dict:
        """What ``python -m eval.reader --calibrate`` fitted (``calibration.json``): ``retrieval_weight``,
        how much a passage's retrieval score counts beside the reader's when spans of several passages
        compete; ``threshold``, the certainty (``rag.answering.certainty``, with ``similarity_weight`` and
        ``no_answer_weight``) under which a reply declines. Empty when none was fitted: then a reply never
        declines for want of certainty."""
        cal = self.path / "calibration.json"
        return json.loads(cal.read_text(encoding="utf-8")) if cal.is_file() else {}

    @property
    def threshold(self) -> float:
        return float(self.calibration.get("threshold", -math.inf))

    @property
    def retrieval_weight(self) -> float:
        return float(self.calibration.get("retrieval_weight", 0.0))

    @cached_property
    def _session(self):
        model = self.path / "model.onnx"
        if not model.is_file():
            raise FileNotFoundError(
                f"no reader model at {model}: reinstall the package, "
                "or train one with python -m eval.train_reader"
            )
        return bert_onnx.session(model, threads=self.threads)

    @cached_property
    def _tokenizer(self):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        tok.no_padding()
        return tok

    def warm_up(self) -> None:
        """Load the model now rather than on the first question."""
        with self._lock:
            self._session, self._tokenizer  # noqa: B018 - loading is the point

    def read(self, question: str, passages: Sequence[str], *, top: int | None = 5) -> list[Span]:
        """The ``top`` best spans of ``passages`` (all of them with None), best first, one per window."""
        if not passages or not question.strip():
            return []
        windows = []  # (passage, encoding)
        with self._lock:
            session, tok = self._session, self._tokenizer
            for p, enc in enumerate(self._encode(tok, question, passages)):
                windows.extend((p, e) for e in (enc, *enc.overflowing))
            feed = bert_onnx.batch([e for _, e in windows])
            starts, ends = session.run(["start_logits", "end_logits"], feed)
        breaks = [[i for i, c in enumerate(text) if c == "\n"] for text in passages]  # once per passage
        spans = [
            span
            for row, (p, e) in enumerate(windows)
            if (span := _best_span(p, e, starts[row], ends[row], breaks[p])) is not None
        ]
        spans.sort(key=lambda s: -s.score)
        return spans if top is None else spans[:top]

    def _encode(self, tok, question: str, passages: Sequence[str]):
        """Windows of question + passage for every passage. A question longer than half a window is cut
        to its first half-window of pieces, and windows overlap by at most half the passage pieces they
        hold, so that every window moves forward through its passage."""
        tok.no_truncation()
        pieces = tok.encode(question, add_special_tokens=False)
        cap = self.max_len // 2
        if len(pieces.ids) > cap:
            question = question[: pieces.offsets[cap - 1][1]]
        room = self.max_len - min(len(pieces.ids), cap) - 3  # [CLS] question [SEP] passage [SEP]
        tok.enable_truncation(self.max_len, stride=min(self.stride, room // 2), strategy="only_second")
        return tok.encode_batch([(question, text) for text in passages])


def _best_span(
    passage: int, enc, start_logits: np.ndarray, end_logits: np.ndarray, breaks: list[int]
) -> Span | None:
    """The most probable span of one window, scored within the window ([CLS] = no answer). A span never
    runs from one line of its passage into the next (``breaks``: the offsets of the passage's line breaks):
    a heading or a paragraph after a line break is no part of the answer before it."""
    context = np.array([s == 1 for s in enc.sequence_ids])
    if not context.any():
        return None
    line = np.searchsorted(breaks, [start for start, _ in enc.offsets])  # each piece's line of text
    allowed = context.copy()
    allowed[0] = True  # [CLS]
    p_start = _softmax(np.where(allowed, start_logits[: len(allowed)], -np.inf))
    p_end = _softmax(np.where(allowed, end_logits[: len(allowed)], -np.inf))
    ctx = np.flatnonzero(context)
    s_top = ctx[np.argsort(-p_start[ctx])[:TOP_PIECES]]
    e_top = ctx[np.argsort(-p_end[ctx])[:TOP_PIECES]]
    best, best_p = None, 0.0
    for s in s_top:
        for e in e_top:
            if s <= e < s + MAX_ANSWER_PIECES and line[s] == line[e] and p_start[s] * p_end[e] > best_p:
                best, best_p = (s, e), float(p_start[s] * p_end[e])
    if best is None:
        return None
    s, e = best
    return Span(passage, enc.offsets[s][0], enc.offsets[e][1], best_p, float(p_start[0] * p_end[0]))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()
