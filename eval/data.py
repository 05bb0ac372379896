"""Loading question sets: our JSON Lines (``eval/qa.jsonl``) and SQuAD v1.1 JSON.

Nothing here imports ``rag``: SQuAD paragraphs come back as plain :class:`Passage` records and
``eval.run`` turns them into documents, so the loaders can be tested without the library.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUESTION_TYPES = frozenset({"date", "person", "organisation", "number", "place", "phrase", "unanswerable"})


class EvalError(Exception):
    """Bad input to the evaluation. The message is one line, fit to print as is."""


@dataclass(frozen=True)
class EvalItem:
    """One question with its gold answers and the document that holds them."""

    id: str
    question: str
    answers: tuple[str, ...]  # empty for an unanswerable question
    source: str | None  # gold document id; None when unanswerable
    type: str | None  # one of QUESTION_TYPES; None for SQuAD, which has no types
    history: tuple[dict[str, str], ...] | None = None  # earlier chat turns, for follow-up questions
    lang: str = "en"  # the question's language (eval/qa-zh.jsonl: "zh", "ja", "de")

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class Passage:
    """A SQuAD paragraph to index: becomes ``rag.Document(id, title, None, text)``."""

    id: str  # "{article title}#{paragraph number}"
    title: str
    text: str


@dataclass(frozen=True)
class Dataset:
    """A loaded question set. ``passages`` is empty for JSON Lines, which uses the default corpus."""

    path: Path
    format: str  # "jsonl" or "squad"
    items: list[EvalItem]
    passages: list[Passage]
    sha256: str  # of the file's bytes: names the SQuAD index cache


def load_dataset(path: Path) -> Dataset:
    """Load ``path``, telling SQuAD (a JSON object with a top-level "data" key) from JSON Lines."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EvalError(f"no data file at {path}") from None
    except OSError as e:
        raise EvalError(f"cannot read {path}: {e.strerror}") from e
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EvalError(f"{path} is not UTF-8 text (byte {e.start})") from e

    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None  # not one JSON value: JSON Lines with several lines, or garbage
    if isinstance(whole, dict) and "data" in whole:
        items, passages = _parse_squad(whole, path)
        return Dataset(path=path, format="squad", items=items, passages=passages, sha256=digest)
    if not _looks_like_jsonl(whole, text, path):
        raise EvalError(
            f"unknown format in {path}: expected SQuAD JSON (a top-level 'data' key) "
            "or JSON Lines with one question object per line"
        )
    items = _parse_jsonl(text, path)
    return Dataset(path=path, format="jsonl", items=items, passages=[], sha256=digest)


def sample_items(items: list[EvalItem], limit: int | None, *, seed: int = 0) -> list[EvalItem]:
    """``limit`` items chosen reproducibly by ``random.Random(seed).sample``, kept in file order."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    # Sampling indices picks the same items as sampling the list; sorting them keeps the printed rows
    # in the order of the file, which makes two runs easy to compare.
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def _looks_like_jsonl(whole: Any, text: str, path: Path) -> bool:
    if whole is not None:  # one JSON value: JSON Lines only if it is a single question
        return isinstance(whole, dict) and "question" in whole
    if path.suffix == ".jsonl":
        return True  # so a broken line is reported by number, not as an unknown format
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def _parse_jsonl(text: str, path: Path) -> list[EvalItem]:
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from e
        item = _jsonl_item(obj, where)
        if item.id in seen:
            raise EvalError(f"{where}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise EvalError(f"no questions in {path}")
    return items


def _jsonl_item(obj: Any, where: str) -> EvalItem:
    if not isinstance(obj, dict):
        raise EvalError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [key for key in ("id", "question", "answers", "source", "type") if key not in obj]
    if missing:
        raise EvalError(f"{where}: missing {', '.join(missing)}")
    id_, question, answers, source, qtype = (obj[k] for k in ("id", "question", "answers", "source", "type"))
    if not isinstance(id_, str | int) or isinstance(id_, bool) or str(id_) == "":
        raise EvalError(f"{where}: 'id' must be a non-empty string")
    if not isinstance(question, str) or not question.strip():
        raise EvalError(f"{where}: 'question' must be a non-empty string")
    if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
        raise EvalError(f"{where}: 'answers' must be a list of non-empty strings")
    if source is not None and not isinstance(source, str):
        raise EvalError(f"{where}: 'source' must be a file name or null")
    lang = obj.get("lang", "en")
    if not isinstance(lang, str) or not lang:
        raise EvalError(f"{where}: 'lang' must be a language code such as \"zh\"")
    if qtype not in QUESTION_TYPES:
        raise EvalError(f"{where}: 'type' must be one of {', '.join(sorted(QUESTION_TYPES))}, got {qtype!r}")
    # The three ways of saying "unanswerable" must agree, or the item would be scored inconsistently.
    if (qtype == "unanswerable") != (not answers) or (not answers) != (source is None):
        raise EvalError(
            f"{where}: an unanswerable question has type 'unanswerable', answers [] and source null; "
            "an answerable one has all three set"
        )
    return EvalItem(
        id=str(id_),
        question=question,
        answers=tuple(answers),
        source=source,
        type=qtype,
        history=_history(obj.get("history"), where),
        lang=lang,
    )


def _history(history: Any, where: str) -> tuple[dict[str, str], ...] | None:
    if history is None:
        return None
    ok = isinstance(history, list) and all(
        isinstance(turn, dict) and isinstance(turn.get("role"), str) and isinstance(turn.get("content"), str)
        for turn in history
    )
    if not ok:
        raise EvalError(f"{where}: 'history' must be a list of {{'role', 'content'}} string objects")
    return tuple({"role": turn["role"], "content": turn["content"]} for turn in history)


def _parse_squad(obj: dict[str, Any], path: Path) -> tuple[list[EvalItem], list[Passage]]:
    articles = obj["data"]
    if not isinstance(articles, list):
        raise EvalError(f"{path}: SQuAD 'data' must be a list of articles")
    items: list[EvalItem] = []
    passages: list[Passage] = []
    for i, article in enumerate(articles):
        if not isinstance(article, dict) or not isinstance(article.get("title"), str):
            raise EvalError(f"{path}: SQuAD article {i} has no 'title' string")
        title = article["title"]
        paragraphs = article.get("paragraphs")
        if not isinstance(paragraphs, list):
            raise EvalError(f"{path}: SQuAD article {title!r} has no 'paragraphs' list")
        for j, paragraph in enumerate(paragraphs):
            where = f"{path}: SQuAD article {title!r} paragraph {j}"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                raise EvalError(f"{where} has no 'context' string")
            passage_id = f"{title}#{j}"
            # Every paragraph is indexed, questions or not: open retrieval must search them all.
            passages.append(Passage(id=passage_id, title=title.replace("_", " "), text=paragraph["context"]))
            for qa in paragraph.get("qas", []):
                items.append(_squad_item(qa, passage_id, where))
    if not items:
        raise EvalError(f"no questions in {path}")
    return items, passages


def _squad_item(qa: Any, passage_id: str, where: str) -> EvalItem:
    if (
        not isinstance(qa, dict)
        or not isinstance(qa.get("id"), str)
        or not isinstance(qa.get("question"), str)
    ):
        raise EvalError(f"{where}: a question lacks an 'id' or 'question' string")
    answers = qa.get("answers", [])
    if not isinstance(answers, list) or not all(
        isinstance(a, dict) and isinstance(a.get("text"), str) for a in answers
    ):
        raise EvalError(f"{where}: question {qa['id']!r} has malformed 'answers'")
    # Several annotators often gave the same span; keep one copy of each, in order.
    golds = tuple(dict.fromkeys(a["text"] for a in answers if a["text"].strip()))
    # SQuAD v1.1 has no unanswerable questions; v2.0 marks them is_impossible with no answers.
    unanswerable = qa.get("is_impossible", False) or not golds
    return EvalItem(
        id=qa["id"],
        question=qa["question"],
        answers=() if unanswerable else golds,
        source=None if unanswerable else passage_id,
        type="unanswerable" if unanswerable else None,
    )
