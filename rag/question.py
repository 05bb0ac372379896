"""Stage 6: read the question - what retrieval is given, and what the reader is asked.

A follow-up ("And when was it founded?", "What about Hongqi?") is retrieved with the user's previous
question in front of it, so the passages about "it" come back; the reader is asked the question as typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .nlp import terms

# Follow-ups lean on the previous question: pronouns, "and ...?", "what about ...?"
_FOLLOW_UP = re.compile(
    r"\b(?:it|its|they|them|their|theirs|he|him|his|she|her|hers|this|that|these|those|"
    r"there|the\s+same)\b|^\s*(?:and|also|what\s+about|how\s+about)\b",
    re.I,
)
# The kind of answer, by wh-word; the earliest cue wins. A label for callers (Answer.question_type):
# the reader does not use it.
_KINDS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^\s*(?:why|how)\b(?!\s+(?:many|much|long|old|large|far|big|often|tall))"), "explain"),
    (re.compile(r"\bhow\s+(?:many|much|large)\b"), "number"),
    (re.compile(r"\bwhen\b|\bhow\s+(?:long|old)\b|\bwhat\s+(?:year|date|day|month)\b"), "date"),
    (re.compile(r"\bwho(?:m|se)?\b"), "person"),
    (re.compile(r"\bwhere\b"), "place"),
]


@dataclass(frozen=True)
class Question:
    text: str  # as asked: what the reader reads
    query: str  # what retrieval is given: a follow-up carries the previous question
    kind: str  # "date", "person", "number", "place", "explain" or "phrase"


def read_question(question: str, history: list[dict] | None = None) -> Question:
    query = question
    previous = last_turn(history, "user")
    if previous and (_FOLLOW_UP.search(question) or len(terms(question)) < 2):
        query = f"{previous} {question}"
    return Question(question, query, question_kind(question))


def question_kind(question: str) -> str:
    q = question.lower()
    found = [(m.start(), kind) for pattern, kind in _KINDS if (m := pattern.search(q))]
    return min(found)[1] if found else "phrase"


def last_turn(history: list[dict] | None, role: str) -> str | None:
    for turn in reversed(history or []):
        if isinstance(turn, dict) and turn.get("role") == role:
            text = message_text(turn.get("content"))
            if text.strip():
                return text
    return None


def message_text(content) -> str:
    """A chat message's text: a string, a ``{"text": ...}`` block, or a list of them."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return message_text(content.get("text", content.get("content", "")))
    if isinstance(content, list):
        return "\n".join(t for t in (message_text(part) for part in content) if t)
    return ""
