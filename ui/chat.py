"""The chat's replies as they stream: :func:`respond` answers a message given the chat so far, and
:func:`converse` adds the question and the reply to the chat. Gradio chat messages in, messages out."""

from __future__ import annotations

import time
from collections.abc import Iterator

from rag import Index, LLMSettings, RagError, ask, ask_stream
from rag.api import clean_text
from rag.question import message_text

from .render import (
    SOURCES_CLASS,
    cited_cards,
    escape_md,
    render_answer,
    render_generated,
    render_sources,
    stream_lengths,
)

# Streaming: the reply is ready in ~15 ms, so it is paced to read as typing, yet done in well under a second.
# Each update costs Gradio a few ms to send and the browser to render, so words go out in a few batches.
STREAM_SECONDS = 0.25  # pacing of the whole reply, however long
STREAM_STEPS = 8  # updates after the short answer
# A language model's tokens are shown as they come, but at most this often: each update re-sends the reply.
STREAM_INTERVAL = 0.05
WRITING = "_Writing the answer from the passages…_"


def respond(
    message: str | dict,
    history: list[dict] | None,
    *,
    index: Index | None = None,
    seconds: float = STREAM_SECONDS,
    llm: LLMSettings | None = None,
) -> Iterator[list[dict]]:
    """Answer ``message`` given the chat so far, as Gradio chat messages.

    Yields the reply as it grows (the short answer first, then a few words at a time), and finally the
    reply followed by a second message holding the numbered source cards. Invalid questions and
    library errors come back as a reply saying what to do; anything else is a bug and propagates.
    With ``llm``, the reply is written by that server's model and streams token by token
    (:func:`respond_generated`).
    """
    message = clean(message)
    if llm is not None:
        yield from respond_generated(message, history, index=index, llm=llm)
        return
    try:
        answer = ask(message_text(message), history=conversation(history), index=index)
    except RagError as e:
        yield [assistant(f"⚠️ {escape_md(str(e))}")]
        return
    lengths = stream_lengths(answer, STREAM_STEPS)
    delay = seconds / max(len(lengths) - 1, 1)
    for i, words in enumerate(lengths[:-1]):
        if i:
            time.sleep(delay)
        yield [assistant(render_answer(answer, words))]
    if len(lengths) > 1:
        time.sleep(delay)
    sources = render_sources(answer)
    yield [assistant(render_answer(answer))] + ([assistant(sources)] if sources else [])


def respond_generated(
    message: str | dict, history: list[dict] | None, *, index: Index | None = None, llm: LLMSettings
) -> Iterator[list[dict]]:
    """:func:`respond` with a language model: its words as they stream, then the finished reply (with
    the extracted answer beside it and any notice) and the source cards. When the server fails, even
    part-way, the last reply is the extracted answer under a notice saying why."""
    try:
        generation = ask_stream(message_text(message), history=conversation(history), index=index, llm=llm)
    except RagError as e:
        yield [assistant(f"⚠️ {escape_md(str(e))}")]
        return
    if not generation.extracted.abstained:
        yield [assistant(WRITING)]  # the first token may take a while on a local CPU model
    shown, last = "", time.monotonic()
    for delta in generation:
        shown += delta
        if time.monotonic() - last >= STREAM_INTERVAL:
            last = time.monotonic()
            yield [assistant(escape_md(shown))]
    result = generation.result()
    sources = render_sources(result.extracted, cited=cited_cards(result))
    yield [assistant(render_generated(result))] + ([assistant(sources)] if sources else [])


def converse(
    message: str,
    history: list[dict] | None,
    *,
    index: Index | None = None,
    seconds: float = STREAM_SECONDS,
    llm: LLMSettings | None = None,
) -> Iterator[list[dict]]:
    """The whole chat after ``message``: the history, the question, then the reply as :func:`respond`
    streams it. A blank message changes nothing (Enter on an empty box)."""
    history = list(history or [])
    message = clean(message)
    if not message_text(message).strip():
        yield history
        return
    history.append({"role": "user", "content": message})
    yield history  # the question shows at once, before the answer is looked up
    for reply in respond(message, history[:-1], index=index, seconds=seconds, llm=llm):
        yield history + reply


def clean(message: str | dict) -> str | dict:
    """The message with what cannot be encoded (lone surrogates a script can send, NUL) replaced by
    U+FFFD, as :func:`rag.api.clean_text` does for ``ask()``: else the chat could show neither the
    question nor any reply to it."""
    return clean_text(message) if isinstance(message, str) else message


def assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


def conversation(history: list[dict] | None) -> list[dict]:
    """The chat as ``ask()`` reads it: user and assistant text, without the source cards."""
    turns = []
    for msg in history or []:
        role = msg.get("role") if isinstance(msg, dict) else None
        text = message_text(msg.get("content")) if role in ("user", "assistant") else ""
        if text.strip() and SOURCES_CLASS not in text[:60]:
            turns.append({"role": role, "content": text})
    return turns
