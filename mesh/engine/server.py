"""The client side of the proxy: parses requests with httptools and runs them in order."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

import httptools

from mesh import errors
from mesh.engine import head
from mesh.engine.engine import Engine
from mesh.engine.exchange import Exchange
from mesh.engine.headers import received_request_id
from mesh.engine.outbox import QueuedWrites
from mesh.engine.refusal import Refusal
from mesh.engine.request import Header, Request

# Pipelined requests parsed ahead of the one being served; beyond this we stop reading.
_MAX_QUEUED = 16
# Body bytes buffered before an upstream connection is ready; beyond this we stop reading.
_BODY_BUFFER = 256 * 1024
# After an error answer the client may still be sending: read and drop its bytes this
# long, so that closing does not reset the connection before it has read the answer.
_LINGER = 2.0


class ClientConnection(QueuedWrites, asyncio.Protocol):
    """One client connection: requests are parsed as they come and answered in order."""

    identity = b""  # the caller's SPIFFE id; only agents.inbound's connections prove one

    def __init__(self, engine: Engine, *, proto: bytes = b"http") -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.peer = b""  # the client's address, for x-forwarded-for and keys
        self.proto = proto  # the scheme clients used: x-forwarded-proto says it upstream
        self.closing = False
        self.write_paused = False
        # Deadlines on the client, checked by the engine's sweep (see expire): since when
        # the connection has waited for a request (opened, or its last answer sent), and
        # since when the head in progress has been arriving (0: none in progress).
        self._idle_since = 0.0
        self._head_since = 0.0
        self._began = 0.0  # when the latest head began, kept for a refusal's duration
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[Header] = []
        self._header_bytes = 0
        # Bytes the parser reported (line, headers, bodies); when a read reports none, it
        # went into a line httptools holds back until it ends (a header, a trailer, a chunk
        # extension), and counts against the head limit so an endless line is refused early.
        self._reported = 0
        self._unreported = 0
        self._parsing: Request | None = None  # the request whose body is arriving
        self._queue: deque[Request] = deque()
        self._active: Exchange | None = None
        self._tunnel: Request | None = None  # after an upgrade request, bytes belong to it
        self._rejection: Refusal | None = None  # answered once earlier ones finish
        # With a body limit, a chunked body is held here until whole (see _hold).
        self._holding: Request | None = None
        self._holding_since = 0.0
        self._paused: set[str] = set()
        self._outbox = engine.outbox
        self._out = None
        self._eof = False  # the client sent everything it will send
        # Exchanges answered at once (404, 503) end inside _next: without this guard a
        # read full of pipelined requests would recurse once per request.
        self._starting = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0].encode() if isinstance(peer, tuple) else b"unix"

        self._idle_since = self.engine.loop.time()
        self.engine.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # lingering after an error answer: what comes is dropped
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.feed(data)
            if tunnel.buffered > _BODY_BUFFER:
                self.set_reading(False, reason="body")
            return
        reported = self._reported
        while True:  # more than once only after an upgrade the proxy declined (h2c)
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                rest = data[upgrade.args[0] :]
                if self._queue[-1].upgrade:
                    self._start_tunnel(rest)
                else:  # declined (see Request): the resumed parser reads HTTP/1.1 on
                    data = rest
                    continue
            except httptools.HttpParserError as exc:
                self._reject(head.refusal(exc))
                return
            break
        if reported != self._reported:
            self._unreported = 0
        else:
            self._unreported += len(data)
            if self._header_bytes + self._unreported > self.engine.max_header_bytes:
                self._reject(errors.HeadersTooLarge("request head too large"))
                return
        self._next()

    def eof_received(self) -> bool:
        if (
            self.closing
            or self._tunnel is not None
            or self._parsing is not None
            or (self._active is None and not self._queue)
        ):
            # Close now: nothing complete is left to answer. An answer finished in this
            # loop iteration may still wait in the outbox: it goes out before the close.
            self.flush()
            return False
        self._eof = True  # answer what was asked, then close (see _next)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._out = None
        self.engine.connections.discard(self)
        active, self._active = self._active, None
        if active is not None:
            active.cancel()
        self._queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._active is not None:
            self._active.client_writable(False)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._active is not None:
            self._active.client_writable(True)

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._reported += 1
        self._head_since = self._began = self.engine.loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        self._reported += len(url)
        if self._header_bytes > self.engine.max_header_bytes:
            raise errors.HeadersTooLarge("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self._header_bytes += size
        self._reported += size
        if self._header_bytes > self.engine.max_header_bytes:
            raise errors.HeadersTooLarge(
                f"request head exceeds {self.engine.max_header_bytes} bytes"
            )
        if self._parsing is not None:
            self._parsing.trailers.append((name, value))
        else:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_since = 0.0
        request = head.received(
            self._parser,
            self._url,
            self._headers,
            client=self.peer,
            normalize_path=self.engine.normalize_path,
        )
        limit = self.engine.max_body_bytes
        if limit and request.content_length is not None and request.content_length > limit:
            raise errors.BodyTooLarge(f"body of {request.content_length} bytes exceeds {limit}")
        self._parsing = request
        self._queue.append(request)

    def on_body(self, chunk: bytes) -> None:
        request = self._parsing
        assert request is not None
        limit = self.engine.max_body_bytes
        if limit and request.body_seen + len(chunk) > limit:
            raise errors.BodyTooLarge(f"body exceeds {limit} bytes")
        self._reported += len(chunk)
        request.feed(chunk)
        if request.buffered > _BODY_BUFFER and request is not self._holding:
            self.set_reading(False, reason="body")

    def on_message_complete(self) -> None:
        request = self._parsing
        self._parsing = None
        if request is not None:
            request.finish()

    # --- running requests in order ---

    def _next(self) -> None:
        if self._starting:
            return
        self._starting = True
        try:
            while self._active is None and self._queue and not self.closing:
                request = self._queue[0]
                if request.chunked and self.engine.max_body_bytes and not request.complete:
                    self._hold(request)
                    break
                self._queue.popleft()
                self._holding = None
                self._active = exchange = Exchange(self, request, self.engine)
                exchange.start()
        finally:
            self._starting = False
        if self._active is None and not self.closing:
            if self._rejection is not None:
                refusal, self._rejection = self._rejection, None
                self.write(refusal.answer())
                self.close(linger=True)
                return
            if self._eof:
                self.close()
                return
        self.set_reading(len(self._queue) < _MAX_QUEUED, reason="pipeline")

    def _hold(self, request: Request) -> None:
        """Keep a chunked body until it is whole, so that one over the limit never leaves.

        Its size is unknown until its last chunk; streamed, an oversized or malformed body
        would reach the upstream in part before the 413 or 400. Held, it costs up to the
        limit in memory and must arrive within the request timeout (408 otherwise). A
        client waiting for `100 Continue` gets it from here: the upstream receives the body
        whole and is not asked.
        """
        if self._holding is request:
            return
        self._holding = request
        self._holding_since = self.engine.loop.time()
        self.set_reading(True, reason="body")  # paused while it queued behind another
        headers = request.headers
        kept = [h for h in headers if h[0].lower() != b"expect" or h[1].lower() != b"100-continue"]
        if len(kept) != len(headers):
            request.headers = kept
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def expire(self, now: float) -> None:
        """The engine's sweep, once a second: the deadlines that only the client can miss.

        A head must be whole within the head deadline (408); so must the first request's
        on a new connection, or it is closed without an answer, since nothing was asked.
        Between requests the idle timeout applies; to a held body, the request timeout.
        """
        if self.closing:
            return
        engine = self.engine
        if self._head_since:
            # Only while nothing before it is being answered: until then it waits on us.
            if (
                self._active is None
                and not self._queue
                and now - self._head_since > engine.client_header_timeout
            ):
                timeout = engine.client_header_timeout
                self._reject(errors.ClientTimeout(f"request head incomplete after {timeout:g} s"))
        elif self.idle:
            limit = engine.client_idle_timeout if self._reported else engine.client_header_timeout
            if now - self._idle_since > limit:
                self.close()
        elif self._holding is not None and now - self._holding_since > engine.request_timeout:
            timeout = engine.request_timeout
            self._reject(errors.ClientTimeout(f"request body incomplete after {timeout:g} s"))

    def _start_tunnel(self, rest: bytes) -> None:
        """An upgrade request was parsed: the client's next bytes are for the new protocol.

        They are held in the request until the upstream answers 101, and dropped if it
        answers anything else; nothing after an upgrade request is parsed as HTTP.
        """
        # Parsed in this very feed (an upgrade request has no body), so still queued last.
        self._tunnel = tunnel = self._queue[-1]
        if rest:
            tunnel.feed(rest)

    def exchange_done(self, exchange: Exchange) -> None:
        if exchange is not self._active:
            return
        self._active = None
        self._idle_since = now = self.engine.loop.time()
        if self._head_since:
            self._head_since = now  # the next head, pipelined, is due from now on
        request = exchange.request
        if not exchange.keep_alive or request.upgrade:
            # The client may be mid-body (or mid-tunnel): let it read the answer first.
            self.close(linger=not request.complete or request.upgrade)
            return
        self.set_reading(True, reason="upstream")  # that exchange's upstream is gone
        self._next()

    def _reject(self, error: errors.ProxyError) -> None:
        """A request failed to parse or was refused: answer it after those before it, close."""
        bad, self._parsing = self._parsing, None
        self._holding = None  # the connection ends after this: nothing held may time out
        self.set_reading(False, reason="rejected")
        active = self._active
        if bad is not None and active is not None and active.request is bad:
            # Its head is upstream already and its body proved bad: end it here, then close.
            active.keep_alive = False
            active.fail(error)
            return
        if bad is not None and bad in self._queue:
            self._queue.remove(bad)
        self._rejection = self._refusal(error, bad)
        self._next()

    def _refusal(self, error: errors.ProxyError, bad: Request | None) -> Refusal:
        """What is known of the refused request: all of its head once that was whole."""
        if bad is not None:
            method, target, host, body = bad.method, bad.target, bad.host, bad.body_seen
            headers = bad.headers
        else:
            # Mid-head: the method is known once the target began (before, the parser's
            # is a default); headers only those reported before the refusal.
            target, body, headers = self._url, 0, self._headers
            method = self._parser.get_method() if target else b""
            host = next((value for name, value in headers if name.lower() == b"host"), b"")
        return Refusal(
            self.engine,
            error,
            method=method,
            target=target,
            authority=host,
            bytes_in=body,
            peer=self.identity,
            request_id=received_request_id(headers),
            began=self._began or self.engine.loop.time(),
        )

    # --- used by exchanges ---

    def _open_transport(self) -> asyncio.Transport | None:
        return None if self.closing else self.transport

    def set_reading(self, on: bool, *, reason: str) -> None:
        if on and not self._paused:
            return  # the usual case, several times per request: nothing to change
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

    def close(self, *, linger: bool = False) -> None:
        """Close after what was written is flushed; `linger` drains the client a while first."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.flush()  # what was written goes out before the end
        if linger and not self.closing and transport.can_write_eof():
            self.closing = True
            transport.write_eof()  # the answer, then FIN; reading goes on, into nothing
            if self._paused:
                self._paused.clear()
                transport.resume_reading()
            self.engine.loop.call_later(_LINGER, transport.close)
            return
        self.closing = True
        transport.close()

    def abort(self) -> None:
        """Drop the connection at once (RST): the client must not mistake a cut for an end."""
        if self.transport is not None:
            self.closing = True
            self._out = None
            self.transport.abort()

    def instances_gone(self, gone: set[tuple[str, int]], silent: Callable[[str], bool]) -> None:
        """Instances at `gone` left routing: the request being answered may move."""
        if self._active is not None:
            self._active.instances_gone(gone, silent)

    @property
    def idle(self) -> bool:
        """Between requests: nothing to answer and no byte of the next one yet."""
        return (
            self._active is None
            and not self._queue
            and self._parsing is None
            and not self._head_since
        )
