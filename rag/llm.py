"""Talking to an OpenAI-compatible language model server: one chat completion, streamed or not.

Plain ``httpx`` on ``POST /v1/chat/completions`` (and ``GET /v1/models``, to find the model when none is
named), which every such server speaks: Ollama, llama.cpp's server, vLLM, OpenAI. The official client
would add a large import and, across its major versions, two different HTTP libraries whose errors we
would have to tell apart; the protocol is small enough to speak directly.

Every way the server can fail us - refused connection, silence, an HTTP error, a body that is not a chat
completion, a connection that breaks off mid-answer, an answer that runs past its deadline - is raised as
:class:`LLMUnavailable` with a short reason a reader can act on; the caller shows the extracted answer
instead. Nothing else is caught here: a bug in this module still surfaces as one.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

from .config import LLMSettings
from .errors import LLMUnavailable

CONNECT_TIMEOUT = 5.0  # seconds to open a connection: a local server that is up answers in milliseconds
STALL_TIMEOUT = 20.0  # seconds of silence mid-answer before giving up (the whole answer: llm.timeout)

_models: dict[tuple[str, str | None], str] = {}
_models_lock = threading.Lock()


def api_root(base_url: str) -> str:
    """The API root that ``/chat/completions`` is appended to: a bare ``http://host:port`` gets ``/v1``
    (where Ollama, llama.cpp's server and vLLM all serve it); a URL with a path is used as given."""
    url = base_url.strip().rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


def chat_stream(llm: LLMSettings, messages: list[dict], *, max_tokens: int | None = None) -> Iterator[str]:
    """Stream one chat completion: yields the text as the server sends it (deltas, never empty).

    Raises :class:`LLMUnavailable` when the server fails, falls silent for ``STALL_TIMEOUT`` seconds, ends
    the stream without finishing the answer, or has not finished within ``llm.timeout`` seconds.
    """
    deadline = time.monotonic() + llm.timeout
    root = api_root(llm.base_url)
    payload = _payload(llm, messages, max_tokens or llm.max_tokens, stream=True)
    chunks, finished = 0, False
    try:
        with _client().stream(
            "POST", f"{root}/chat/completions", json=payload, headers=_headers(llm), timeout=_timeout(llm)
        ) as response:
            _check_status(response, root)
            if "json" in response.headers.get("content-type", ""):
                # a server that ignores "stream": the whole completion at once
                response.read()
                yield _message(response.json())
                return
            for data in _events(response):
                if time.monotonic() > deadline:
                    raise LLMUnavailable(f"it had not finished after {llm.timeout:g} s")
                if data == "[DONE]":
                    finished = True
                    break
                delta, last = _delta(json.loads(data))
                chunks += 1
                finished = finished or last
                if delta:
                    yield delta
    except httpx.HTTPError as e:
        raise LLMUnavailable(describe(e, root)) from e
    except ValueError as e:  # JSON that does not parse, or chunks of the wrong shape
        raise LLMUnavailable(f"{root} sent something that is not a chat completion") from e
    if not finished:
        # a server that closes the connection instead of ending the stream: the answer may be cut short
        raise LLMUnavailable(
            f"the answer from {root} broke off"
            if chunks
            else f"{root} sent something that is not a chat completion"
        )


def complete(llm: LLMSettings, messages: list[dict], *, max_tokens: int) -> str:
    """One short chat completion, not streamed: its text. Raises :class:`LLMUnavailable` on failure."""
    root = api_root(llm.base_url)
    payload = _payload(llm, messages, max_tokens, stream=False)
    timeout = httpx.Timeout(llm.timeout, connect=min(llm.timeout, CONNECT_TIMEOUT))
    try:
        response = _client().post(
            f"{root}/chat/completions", json=payload, headers=_headers(llm), timeout=timeout
        )
        _check_status(response, root)
        return _message(response.json())
    except httpx.HTTPError as e:
        raise LLMUnavailable(describe(e, root)) from e
    except ValueError as e:
        raise LLMUnavailable(f"{root} sent something that is not a chat completion") from e


def model_name(llm: LLMSettings) -> str:
    """``llm.model``, or when empty the first model the server lists (asked once per server)."""
    if llm.model:
        return llm.model
    key = (llm.base_url, llm.api_key)
    with _models_lock:
        if key in _models:
            return _models[key]
    root = api_root(llm.base_url)
    try:
        response = _client().get(f"{root}/models", headers=_headers(llm), timeout=_timeout(llm))
        _check_status(response, root)
        listed = response.json().get("data")
        ids = [m.get("id") for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
    except httpx.HTTPError as e:
        raise LLMUnavailable(describe(e, root)) from e
    except (ValueError, AttributeError) as e:  # not JSON, or JSON that is not an object
        raise LLMUnavailable(f"{root}/models did not list models") from e
    ids = [i for i in ids if isinstance(i, str) and i]
    if not ids:
        raise LLMUnavailable(f"{root} lists no model: name one with RAG_LLM_MODEL or --llm-model")
    with _models_lock:
        _models[key] = ids[0]
    return ids[0]


def describe(error: httpx.HTTPError, root: str) -> str:
    """A short reason for a failed request, for the notice a reader sees (no traceback, no key)."""
    if isinstance(error, httpx.TimeoutException):
        return f"{root} did not reply in time"
    if isinstance(error, httpx.ConnectError):
        return f"cannot reach {root}"
    if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError):
        return f"the connection to {root} broke off"
    return f"{root} failed: {error}"


# --- the protocol --------------------------------------------------------------------------------


def _payload(llm: LLMSettings, messages: list[dict], max_tokens: int, *, stream: bool) -> dict:
    # temperature 0: the same question over the same passages gets the same answer (and eval figures)
    return {
        "model": model_name(llm),
        "messages": messages,
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "stream": stream,
    }


def _headers(llm: LLMSettings) -> dict[str, str]:
    return {"Authorization": f"Bearer {llm.api_key}"} if llm.api_key else {}


def _timeout(llm: LLMSettings) -> httpx.Timeout:
    return httpx.Timeout(min(llm.timeout, STALL_TIMEOUT), connect=min(llm.timeout, CONNECT_TIMEOUT))


def _check_status(response: httpx.Response, root: str) -> None:
    if response.status_code == 200:
        return
    response.read()
    raise LLMUnavailable(f"{root} answered HTTP {response.status_code}{_error_message(response)}")


def _error_message(response: httpx.Response) -> str:
    """The server's own message from an error body (``{"error": {"message": ...}}`` and its variants)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") or error.get("detail") if isinstance(error, dict) else error
    text = " ".join(str(message).split()) if isinstance(message, str) else ""
    return f" ({text[:160]})" if text else ""


def _events(response: httpx.Response) -> Iterator[str]:
    """The data of each server-sent event (``data: ...`` lines); an ``error`` event raises."""
    event = ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
            if event == "error" or data.startswith('{"error"'):
                detail = _error_text(data)
                raise LLMUnavailable(f"the server reported an error{detail}")
            yield data
        elif not line:
            event = ""


def _error_text(data: str) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return f" ({' '.join(str(message).split())[:160]})" if message else ""


def _delta(chunk: object) -> tuple[str | None, bool]:
    """The text of one streamed chunk, and whether it is the last (it has a ``finish_reason``)."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not isinstance(choices, list):
        raise ValueError("a streamed chunk without choices")
    if not choices:  # some servers end with a usage-only chunk
        return None, False
    first = choices[0] if isinstance(choices[0], dict) else {}
    delta = first.get("delta") or {}
    content = delta.get("content") if isinstance(delta, dict) else None
    if content is not None and not isinstance(content, str):
        raise ValueError("a streamed chunk whose content is not text")
    return content, bool(first.get("finish_reason"))


def _message(body: object) -> str:
    """The text of a whole (not streamed) chat completion."""
    choices = body.get("choices") if isinstance(body, dict) else None
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = first.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise ValueError("not a chat completion")
    return text


@functools.cache
def _client() -> httpx.Client:
    """One client, and so one pool of kept-alive connections, per process, made on first use."""
    return httpx.Client(follow_redirects=False)
