"""Refuse requests another web page makes a visitor's browser send to the chat server.

Gradio's CORS handling only withholds the response from a foreign page: the request itself still runs,
so any web site could post files into the upload route or ask questions in a visitor's name. This
middleware answers 403 to a request whose ``Origin`` is not the server's own address (or one named with
``--origin``), and, on a server listening on this machine only, to one whose ``Host`` is neither a
loopback name nor such an origin (a DNS-rebinding page, whose own name resolves to 127.0.0.1). Scripts
(gradio_client, curl) send no ``Origin`` and are let through.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _hostname(netloc: str) -> str:
    host = netloc.rpartition("@")[2].lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0]


def _netloc(url: str) -> str | None:
    """``host[:port]`` of an origin, lower-cased, without its scheme's default port; None if malformed."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host if port is None or str(port) == _DEFAULT_PORTS[parts.scheme] else f"{host}:{port}"


def _strip_default_port(host: str) -> str:
    host = host.strip().lower()
    for port in _DEFAULT_PORTS.values():
        host = host.removesuffix(f":{port}")
    return host


class SameOrigin:
    """ASGI middleware: 403 for cross-origin requests and, with ``local``, for non-loopback hosts."""

    def __init__(self, app, *, local: bool, origins: Iterable[str] = ()):
        self.app = app
        self.local = local
        self.origins = {n for n in map(_netloc, origins) if n}

    def refusal(self, headers: dict[bytes, bytes]) -> str | None:
        """Why a request with these headers is refused, or None."""
        host = headers.get(b"host", b"").decode("latin-1")
        named = _strip_default_port(host) in self.origins  # a reverse proxy that passes its own Host on
        if self.local and _hostname(host) not in LOOPBACK and not named:
            return f"this server answers on 127.0.0.1 and localhost only, not {host!r}"
        origin = headers.get(b"origin")
        if origin is None:
            return None
        netloc = _netloc(origin.decode("latin-1"))
        if netloc is not None and (netloc == _strip_default_port(host) or netloc in self.origins):
            return None
        return "requests from other web pages are refused"

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers: dict[bytes, bytes] = {}
        for k, v in scope.get("headers", []):
            headers.setdefault(k.lower(), v)
        why = self.refusal(headers)
        if why is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        body = f"403 Forbidden: {why}\n".encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
