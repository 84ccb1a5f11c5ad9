"""One keep-alive connection to an instance: writes requests, parses responses with httptools."""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import httptools

from mesh.engine.outbox import Outbox, QueuedWrites
from mesh.engine.request import Header
from mesh.errors import UpstreamProtocolError


class ResponseListener(Protocol):
    """The exchange currently using the connection; every call comes from the event loop."""

    head_only: bool  # the request was HEAD: the response has no body whatever it says

    def on_interim(self, status: int, reason: bytes, headers: list[Header]) -> None: ...

    def on_response_head(
        self, status: int, reason: bytes, headers: list[Header], upgrade: bool
    ) -> None: ...

    def on_response_body(self, chunk: bytes) -> None: ...

    def on_response_end(self, trailers: list[Header], reusable: bool) -> None: ...

    def on_upgraded(self, data: bytes) -> None: ...

    def on_upstream_lost(self, exc: Exception | None) -> None: ...

    def on_upstream_writable(self, writable: bool) -> None: ...


class UpstreamConnection(QueuedWrites, asyncio.Protocol):
    """Attached to at most one exchange at a time; idle between exchanges in its pool."""

    def __init__(self, key: tuple[str, int], outbox: Outbox) -> None:
        self.key = key
        self._outbox = outbox
        self._out = None
        self.transport: asyncio.Transport | None = None
        self.listener: ResponseListener | None = None
        self.closed = False
        self.uses = 0  # exchanges served; >1 means a reused connection that may be stale
        self.idle_since = 0.0
        self.answered = False  # the upstream sent a byte for the current exchange
        self.writable = True  # the transport's write buffer is below its high-water mark
        self.reading = True  # not paused by back-pressure from the client

        self.tunnel = False  # after a 101, bytes are relayed as they are
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[Header] = []
        self._trailers: list[Header] = []
        self._reason = b""
        self._in_body = False  # the head was delivered; later headers are trailers
        # A response ended in the bytes being parsed: whatever follows them was never asked
        # for (the next exchange may already be attached, its request not yet answered).
        self._ended = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        listener = self.listener
        if listener is None:
            # An idle connection must stay silent; anything else is a broken upstream.
            self.close()
            return
        self.answered = True
        self._ended = False
        if self.tunnel:
            listener.on_upgraded(data)
            return
        parser = self._parser
        assert parser is not None
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
            if rest and self.listener is not None:
                self.listener.on_upgraded(rest)
        except httptools.HttpParserError as exc:
            listener, self.listener = self.listener, None
            self.abort()
            if listener is not None:
                cause = exc.__context__
                if not isinstance(cause, UpstreamProtocolError):
                    cause = UpstreamProtocolError(f"invalid response: {cause or exc}")
                listener.on_upstream_lost(cause)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.on_upstream_lost(exc)

    def pause_writing(self) -> None:
        self.writable = False
        if self.listener is not None:
            self.listener.on_upstream_writable(False)

    def resume_writing(self) -> None:
        self.writable = True
        if self.listener is not None:
            self.listener.on_upstream_writable(True)

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        if self._ended:
            raise UpstreamProtocolError("bytes after the end of a response")

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        (self._trailers if self._in_body else self._headers).append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        listener = self.listener
        assert parser is not None
        assert listener is not None
        status = parser.get_status_code()
        headers, self._headers = self._headers, []
        reason, self._reason = self._reason, b""
        if 100 <= status < 200 and status != 101:
            listener.on_interim(status, reason, headers)
            return
        self._in_body = True
        self.tunnel = status == 101
        listener.on_response_head(status, reason, headers, parser.should_upgrade())
        if listener.head_only and not self.tunnel and self.listener is listener:
            # The parser would wait for a body that HEAD never gets; end here and use a
            # fresh parser for the next exchange on this connection.
            self._parser = None
            self._finish(parser.should_keep_alive())

    def on_body(self, chunk: bytes) -> None:
        if self._ended:  # a body after a HEAD response: only a broken upstream sends one
            raise UpstreamProtocolError("a body after the end of a response")
        if self.listener is not None:
            self.listener.on_response_body(chunk)

    def on_message_complete(self) -> None:
        parser = self._parser
        if parser is None or not self._in_body or self.tunnel:
            return  # an interim (1xx) response, a HEAD already finished, or a 101
        self._finish(parser.should_keep_alive())

    def _finish(self, keep_alive: bool) -> None:
        listener, self.listener = self.listener, None
        self._in_body = False
        self._ended = True
        trailers, self._trailers = self._trailers, []
        if listener is not None:
            listener.on_response_end(trailers, keep_alive and not self.closed)

    # --- used by the exchange ---

    def attach(self, listener: ResponseListener) -> None:
        self.listener = listener
        self.uses += 1
        self.answered = False
        if self._parser is None:
            self._parser = httptools.HttpResponseParser(self)

    def _open_transport(self) -> asyncio.Transport | None:
        return None if self.closed else self.transport

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading and self.transport is not None and not self.closed:
            self.reading = True
            self.transport.resume_reading()

    def close(self) -> None:
        """Close once what was written is sent."""
        self.flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once: what it carries must not be taken as complete."""
        self._out = None
        self.closed = True

        if self.transport is not None:
            self.transport.abort()
