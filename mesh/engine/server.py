"""The client side of the proxy: parses requests with httptools and runs them in order."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from mesh import errors
from mesh.engine import replies
from mesh.engine.exchange import Exchange
from mesh.engine.headers import Header
from mesh.engine.request import Request

if TYPE_CHECKING:
    from mesh.engine.engine import Engine

# Pipelined requests parsed ahead of the one being served; beyond this we stop reading.
_MAX_QUEUED = 16
# Body bytes buffered before an upstream connection is ready; beyond this we stop reading.
_BODY_BUFFER = 256 * 1024


class ClientConnection(asyncio.Protocol):
    """One client connection: requests are parsed as they come and answered in order."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.closing = False
        self.last_active = 0.0
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[Header] = []
        self._header_bytes = 0
        self._parsing: Request | None = None  # the request whose body is arriving
        self._queue: deque[Request] = deque()
        self._active: Exchange | None = None
        self._tunnel: Exchange | None = None
        self._rejection: errors.ProxyError | None = None  # answered once earlier ones finish
        self._paused: set[str] = set()
        self._write_paused = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "unix"
        self.last_active = self.engine.loop.time()
        self.engine.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.engine.loop.time()
        if self._tunnel is not None:
            self._tunnel.client_data(data)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._start_tunnel(data[upgrade.args[0] :])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, errors.ProxyError):
                self._reject(cause)
            else:
                self._reject(errors.BadRequest(f"cannot process request: {cause or exc}"))
            return
        except httptools.HttpParserError as exc:
            self._reject(errors.BadRequest(f"malformed request: {exc}"))
            return
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.engine.connections.discard(self)
        active, self._active = self._active, None
        if active is not None:
            active.cancel()
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None:
            tunnel.cancel()
        self._queue.clear()

    def pause_writing(self) -> None:
        self._write_paused = True
        exchange = self._tunnel or self._active
        if exchange is not None:
            exchange.client_writable(False)

    def resume_writing(self) -> None:
        self._write_paused = False
        exchange = self._tunnel or self._active
        if exchange is not None:
            exchange.client_writable(True)

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.engine.max_header_bytes:
            raise errors.HeadersTooLarge("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.engine.max_header_bytes:
            raise errors.HeadersTooLarge(
                f"request head exceeds {self.engine.max_header_bytes} bytes"
            )
        if self._parsing is not None:
            self._parsing.trailers.append((name, value))
        else:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        headers = self._headers
        method = parser.get_method()
        content_length, chunked, host, expect = _framing(headers)
        request = Request(
            method,
            self._url,
            parser.get_http_version().encode(),
            headers,
            client=self.peer,
            keep_alive=parser.should_keep_alive(),
            upgrade=parser.should_upgrade(),
            chunked=chunked,
            content_length=content_length,
            host=host,
            expect_continue=expect,
        )
        if method == b"CONNECT":
            raise errors.BadRequest("CONNECT is not supported")
        limit = self.engine.max_body_bytes
        if limit and content_length is not None and content_length > limit:
            raise errors.BodyTooLarge(f"body of {content_length} bytes exceeds {limit}")
        self._parsing = request
        self._queue.append(request)

    def on_body(self, chunk: bytes) -> None:
        request = self._parsing
        assert request is not None
        limit = self.engine.max_body_bytes
        if limit and request.body_seen + len(chunk) > limit:
            raise errors.BodyTooLarge(f"body exceeds {limit} bytes")
        request.feed(chunk)
        if request.buffered > _BODY_BUFFER:
            self.set_reading(False, reason="body")

    def on_message_complete(self) -> None:
        request = self._parsing
        self._parsing = None
        if request is not None:
            request.finish()

    # --- running requests in order ---

    def _next(self) -> None:
        while self._active is None and self._queue and not self.closing:
            request = self._queue.popleft()
            self._active = exchange = Exchange(self, request, self.engine)
            exchange.start()
        if self._active is None and self._rejection is not None and not self.closing:
            status, flags, data = replies.render(self._rejection, keep_alive=False)
            self._rejection = None
            self.engine.metrics.request_done("", "", status, flags, 0.0)
            self.write(data)
            self.close()
            return
        self.set_reading(len(self._queue) < _MAX_QUEUED, reason="pipeline")

    def _start_tunnel(self, rest: bytes) -> None:
        """An upgrade request was parsed; from here on the client's bytes are opaque."""
        self._next()
        exchange = self._active
        if exchange is None or not exchange.request.upgrade:
            self._reject(errors.BadRequest("upgrade request behind a pipelined request"))
            return
        self._tunnel = exchange
        if rest:
            exchange.client_data(rest)

    def exchange_done(self, exchange: Exchange) -> None:
        if exchange is self._tunnel:
            self._tunnel = None
        if exchange is not self._active:
            return
        self._active = None
        self.last_active = self.engine.loop.time()
        if not exchange.keep_alive or (exchange.request.upgrade and exchange.status != 101):
            self.close()
            return
        if exchange.status == 101:
            return
        self.set_reading(True, reason="body")
        self._next()

    def _reject(self, error: errors.ProxyError) -> None:
        """A request failed to parse or was refused: answer it after those before it, close."""
        bad, self._parsing = self._parsing, None
        self.set_reading(False, reason="rejected")
        active = self._active
        if bad is not None and active is not None and active.request is bad:
            # Its head is upstream already and its body proved bad: end it here, then close.
            active.keep_alive = False
            active.fail(error)
            return
        if bad is not None and bad in self._queue:
            self._queue.remove(bad)
        self._rejection = error
        self._next()

    # --- used by exchanges ---

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    def set_reading(self, on: bool, *, reason: str) -> None:
        if self.transport is None or self.closing:
            return
        was_paused = bool(self._paused)
        if on:
            self._paused.discard(reason)
        else:
            self._paused.add(reason)
        if was_paused and not self._paused:
            self.transport.resume_reading()
        elif not was_paused and self._paused:
            self.transport.pause_reading()

    def close(self) -> None:
        """Close after what was written is flushed."""
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (RST): the client must not mistake a cut for an end."""
        if self.transport is not None:
            self.closing = True
            self.transport.abort()

    @property
    def idle(self) -> bool:
        return self._active is None and not self._queue and self._parsing is None


def _framing(headers: list[Header]) -> tuple[int | None, bool, bytes, bool]:
    """(content length, chunked, host, expects 100-continue), refusing ambiguous framing."""
    content_length: int | None = None
    chunked = False
    host = b""
    expect = False
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-length":
            if content_length is not None or not value.isdigit():
                raise errors.BadRequest("invalid or repeated Content-Length")
            content_length = int(value)
        elif lname == b"transfer-encoding":
            if chunked or value.strip().lower() != b"chunked":
                raise errors.BadRequest("unsupported Transfer-Encoding (only 'chunked')")
            chunked = True
        elif lname == b"host":
            if host:
                raise errors.BadRequest("repeated Host")
            host = value
        elif lname == b"expect":
            expect = value.lower() == b"100-continue"
    if chunked and content_length is not None:
        raise errors.BadRequest("both Content-Length and Transfer-Encoding")
    return content_length, chunked, host, expect
