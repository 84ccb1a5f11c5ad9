"""A request head as the engine reads it: httptools' parse, then the engine's own checks."""

from __future__ import annotations

import httptools

from mesh import errors
from mesh.engine.request import Header, Request
from mesh.forwarding.paths import normalize


def received(
    parser: httptools.HttpRequestParser,
    url: bytes,
    headers: list[Header],
    *,
    client: bytes,
    normalize_path: bool,
) -> Request:
    """The request whose head `parser` has just read whole; ProxyError when it is refused."""
    version = parser.get_http_version()
    if version != "1.1" and version != "1.0":
        raise errors.BadRequest(f"HTTP/{version} is not supported")
    method = parser.get_method()
    if method == b"CONNECT":
        raise errors.BadRequest("CONNECT is not supported")
    return Request(
        method,
        normalize(url) if normalize_path else url,
        b"1.1" if version == "1.1" else b"1.0",
        headers,
        client=client,
        keep_alive=parser.should_keep_alive(),
        upgrade=parser.should_upgrade(),
    )


def refusal(exc: httptools.HttpParserError) -> errors.ProxyError:
    """What the client is answered when httptools stops on its bytes (or on our callback's
    error, its cause)."""
    if isinstance(exc, httptools.HttpParserCallbackError):
        cause = exc.__context__
        if isinstance(cause, errors.ProxyError):
            return cause
        return errors.BadRequest(f"cannot process request: {cause or exc}")
    return errors.BadRequest(f"malformed request: {exc}")


class _Reader:
    """httptools' callbacks for one head; a client connection's, without a connection."""

    def __init__(self, normalize_path: bool, client: bytes) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.normalize_path = normalize_path
        self.client = client
        self.url = b""
        self.headers: list[Header] = []
        self.request: Request | None = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.request = received(
            self.parser,
            self.url,
            self.headers,
            client=self.client,
            normalize_path=self.normalize_path,
        )


def read(head: bytes, *, normalize_path: bool, client: bytes = b"") -> Request:
    """The request a client connection makes of `head` (a whole head, without its body),
    or the ProxyError it answers instead (`mesh explain` asks what a request would get)."""
    reader = _Reader(normalize_path, client)
    try:
        reader.parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass  # the head was read whole; what follows it would be tunnelled
    except httptools.HttpParserError as exc:
        raise refusal(exc) from None
    if reader.request is None:
        raise errors.BadRequest("malformed request: incomplete head")
    return reader.request
