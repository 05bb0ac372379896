"""A scripted fake of an OpenAI-compatible server, on 127.0.0.1, for tests of our logic around it.

Each POST to ``/v1/chat/completions`` takes the next step of the script (``default`` once it is used up)
and records the request's JSON; ``GET /v1/models`` lists one model. Steps: :class:`Say` (a reply,
streamed as server-sent events in the given pieces when the request asks for a stream), :class:`Status`
(an HTTP error), :class:`Garbage` (a 200 whose body is not a chat completion), :class:`Sleep` (silence,
then a step), :class:`Cut` (some pieces, then the connection drops mid-answer, as when the server is
killed). Streams use chunked transfer encoding, as real servers do, so a dropped connection shows.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fake-model"


@dataclass(frozen=True)
class Say:
    text: str
    pieces: tuple[str, ...] = ()  # how a stream is cut; default: one piece per word
    finish: str | None = "stop"  # None: a stream that ends without saying the answer is finished
    delay: float = 0.0  # seconds before each piece


@dataclass(frozen=True)
class Status:
    code: int
    body: str = '{"error": {"message": "model exploded", "type": "server_error"}}'


@dataclass(frozen=True)
class Garbage:
    body: bytes = b"<html>hello, I am not an API</html>"
    content_type: str = "text/html"
    stream_lines: bool = False  # True: send it as a server-sent event stream of junk


@dataclass(frozen=True)
class Sleep:
    seconds: float
    then: object = None


@dataclass(frozen=True)
class Cut:
    pieces: tuple[str, ...]


class FakeLLM:
    """The running fake: ``url`` to configure, ``script`` to fill, ``requests`` to inspect."""

    def __init__(self) -> None:
        self.script: deque = deque()
        self.default: object = Status(500, '{"error": {"message": "unscripted"}}')  # when the script is done
        self.requests: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def then(self, *steps) -> FakeLLM:
        self.script.extend(steps)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(fake: FakeLLM):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest's output clean
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
            else:
                self._json(404, {"error": {"message": "no such path"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.requests.append({"path": self.path, "headers": headers, **body})
            step = fake.script.popleft() if fake.script else fake.default
            self._play(step, bool(body.get("stream")))

        def _play(self, step, stream: bool) -> None:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                if step.then is not None:
                    self._play(step.then, stream)
                return
            if isinstance(step, Status):
                self._raw(step.code, step.body.encode(), "application/json")
            elif isinstance(step, Garbage):
                ctype = "text/event-stream" if step.stream_lines else step.content_type
                self._raw(200, step.body, ctype)
            elif isinstance(step, Say) and not stream:
                self._json(200, _completion(step.text))
            elif isinstance(step, Say):
                pieces = step.pieces or tuple(_words(step.text))
                self._start_stream()
                for piece in pieces:
                    time.sleep(step.delay)
                    self._event(_chunk(piece))
                if step.finish is not None:
                    self._event(_chunk(None, finish=step.finish))
                    self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")  # the end of the body: a clean end, even for an unfinished answer
            elif isinstance(step, Cut):
                self._start_stream()
                for piece in step.pieces:
                    self._event(_chunk(piece))
                self.wfile.flush()
                self.close_connection = True  # drop the connection without ending the chunked body
            else:
                raise TypeError(f"unknown step {step!r}")

        def _json(self, code: int, payload: dict) -> None:
            self._raw(code, json.dumps(payload).encode(), "application/json")

        def _raw(self, code: int, data: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _start_stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _event(self, payload: dict) -> None:
            self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"\s*\S+", text) or [text]


def _chunk(content: str | None, *, finish: str | None = None) -> dict:
    delta = {"content": content} if content is not None else {}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(text: str) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
