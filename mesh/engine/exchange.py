"""One request forwarded to one instance and its response relayed back, by callbacks."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mesh import errors
from mesh.balance.endpoint import Endpoint
from mesh.engine import replies
from mesh.engine.headers import Header, forward_request_head, render
from mesh.engine.request import Request
from mesh.engine.response import NO_BODY_STATUS, client_head, interim_head, switching_head
from mesh.engine.upstream import UpstreamConnection

if TYPE_CHECKING:
    from mesh.engine.engine import Engine, Routed
    from mesh.engine.server import ClientConnection


class Exchange:
    """Drives one request: route, pick, connect, stream both ways, finish exactly once.

    A request written to a reused connection that the upstream had already closed is
    sent again, once, on a fresh one: only if no byte of an answer came back, and only
    if its body is still at hand (none, or one no larger than `retry_body_bytes`).
    """

    __slots__ = (
        "_connecting",
        "client",
        "done",
        "endpoint",
        "engine",
        "flags",
        "head",
        "head_only",
        "keep_alive",
        "rechunk",
        "request",
        "request_id",
        "response_started",
        "routed",
        "stale_retry",
        "started",
        "status",
        "timer",
        "upstream",
        "upstream_delimited",
    )

    def __init__(self, client: ClientConnection, request: Request, engine: Engine) -> None:
        self.client = client
        self.request = request
        self.engine = engine
        self.head_only = request.method == b"HEAD"
        self.done = False
        self.response_started = False
        self.keep_alive = request.keep_alive and not engine.draining
        self.rechunk = False
        self.upstream_delimited = True
        self.status = 0
        self.flags = "-"
        self.head = b""  # the head as sent upstream, kept to send again on a retry
        self.request_id = b""
        self.stale_retry = False  # a retry on a fresh connection is still possible
        self.routed: Routed | None = None
        self.endpoint: Endpoint | None = None
        self.upstream: UpstreamConnection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = engine.loop.time()
        self._connecting: asyncio.Task[None] | None = None

    # --- start ---

    def start(self) -> None:
        engine = self.engine
        try:
            self.routed = routed = engine.route(self.request)
            self.endpoint = endpoint = engine.pick(routed.service)
        except errors.ProxyError as exc:
            self.fail(exc)
            return
        self.timer = engine.loop.call_later(engine.request_timeout, self._timed_out)
        conn = engine.pools.take(endpoint.address)
        if conn is not None:
            self._attach(conn)
        else:
            self._connecting = engine.loop.create_task(self._open(endpoint))

    async def _open(self, endpoint: Endpoint) -> None:
        try:
            conn = await self.engine.pools.connect(endpoint.address, self.engine.connect_timeout)
        except errors.ProxyError as exc:
            self.fail(exc)
            return
        if self.done:
            conn.close()
            return
        self._attach(conn)

    def _attach(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        conn.attach(self)
        client = self.client
        if not conn.writable:
            client.set_reading(False, reason="upstream")
        if client.write_paused:
            conn.pause_reading()
        request = self.request
        if self.head:  # the retry of a request a stale connection swallowed
            if not request.resendable:  # its body grew too large meanwhile
                self.fail(errors.UpstreamReset("connection lost mid-request"))
                return
            conn.write(self.head)
            for chunk in request.kept or ():
                self._send_body(chunk)
            request.kept = None
            if request.complete and request.has_body:
                self._end_body()
            client.set_reading(True, reason="upstream")
            return
        routed = self.routed
        assert routed is not None
        self.head, self.request_id = forward_request_head(
            request,
            routed.target,
            service=routed.service,
            proto=b"http",
            strip_mesh=self.engine.strip_mesh_headers,
            rng=self.engine.rng,
        )
        conn.write(self.head)
        self.stale_retry = conn.uses > 1
        if request.has_body:
            if self.stale_retry:
                request.keep(self.engine.retry_body_bytes)
            request.drain_to(self._send_body, self._end_body)
            client.set_reading(True, reason="body")  # what it buffered is upstream now

    def _send_body(self, chunk: bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            return  # between a stale connection and its replacement: the request keeps it
        if self.request.chunked:
            upstream.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            upstream.write(chunk)

    def _end_body(self) -> None:
        if self.upstream is not None and self.request.chunked:
            self.upstream.write(b"0\r\n%s\r\n" % render(self.request.trailers))

    # --- ResponseListener ---

    def on_interim(self, status: int, reason: bytes, headers: list[Header]) -> None:
        if self.request.version == b"1.1":  # HTTP/1.0 clients cannot take a 1xx
            self.client.write(interim_head(status, reason, headers))

    def on_response_head(
        self, status: int, reason: bytes, headers: list[Header], upgrade: bool
    ) -> None:
        request = self.request
        if status == 101:
            self._switch(reason, headers, upgrade)
            return
        if request.upgrade:
            # Declined: what the client sent after its request was meant for the new
            # protocol; it never reaches the upstream, and the connection ends here.
            request.discard()
            self.keep_alive = False
        if self.engine.draining or not request.complete:
            # An answer before the end of the body usually means the rest will not be
            # read: the connection is announced to end with it (see on_response_end).
            self.keep_alive = False
        try:
            head = client_head(
                request.version,
                status,
                reason,
                headers,
                bodiless=self.head_only or status in NO_BODY_STATUS,
                keep_alive=self.keep_alive,
            )
        except errors.UpstreamProtocolError as exc:
            self.fail(exc)
            return
        self.status = status
        self.response_started = True
        self.rechunk = head.rechunk
        self.upstream_delimited = head.delimited
        self.keep_alive = head.keep_alive
        self.client.write(head.data)

    def _switch(self, reason: bytes, headers: list[Header], upgrade: bool) -> None:
        """A 101: from here on bytes flow as they are, both ways, until a side closes."""
        conn = self.upstream
        if not (self.request.upgrade and upgrade) or conn is None:
            self.fail(errors.UpstreamProtocolError("101 without an agreed upgrade"))
            return
        self.status = 101
        self.response_started = True
        if self.timer is not None:  # a tunnel lives as long as both sides want it
            self.timer.cancel()
            self.timer = None
        self.client.write(switching_head(reason, headers))
        self.request.drain_to(conn.write, _nothing)
        self.client.set_reading(True, reason="body")

    def on_response_body(self, chunk: bytes) -> None:
        if self.rechunk:
            self.client.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            self.client.write(chunk)

    def on_response_end(self, trailers: list[Header], reusable: bool) -> None:
        if self.rechunk:
            self.client.write(b"0\r\n%s\r\n" % render(trailers))
        conn, self.upstream = self.upstream, None
        request = self.request
        if conn is not None:
            if reusable and request.complete:
                self.engine.pools.give_back(conn, self.engine.loop.time())
            else:
                conn.close()
        if not request.complete:
            # The upstream answered before the body ended; the rest of it is not worth
            # reading, and the connection cannot carry another request after it.
            request.discard()
            self.keep_alive = False
        self._finish()

    def on_upgraded(self, data: bytes) -> None:
        self.client.write(data)

    def on_upstream_lost(self, exc: Exception | None) -> None:
        if self.done:
            return
        conn, self.upstream = self.upstream, None
        if self.status == 101:
            self.client.close()
            self._finish()
        elif self.response_started:
            if not self.upstream_delimited and exc is None:
                self.on_response_end([], reusable=False)  # a read-to-close body ends here
            elif isinstance(exc, errors.ProxyError):
                self.fail(exc)
            else:
                self.fail(errors.UpstreamReset("upstream closed mid-response"))
        elif self.stale_retry and self.request.resendable and conn and not conn.answered:
            self.stale_retry = False
            self.client.set_reading(False, reason="upstream")  # until the body can flow again
            endpoint = self.endpoint
            assert endpoint is not None
            self.engine.metrics.attempt(endpoint.service, "stale_connection_retried")
            self._connecting = self.engine.loop.create_task(self._open(endpoint))
        elif isinstance(exc, errors.ProxyError):
            self.fail(exc)
        else:
            why = f" ({type(exc).__name__})" if exc else ""
            self.fail(errors.UpstreamReset(f"upstream closed before responding{why}"))

    def on_upstream_writable(self, writable: bool) -> None:
        self.client.set_reading(writable, reason="upstream")

    # --- client flow control ---

    def client_writable(self, writable: bool) -> None:
        upstream = self.upstream
        if upstream is not None:
            if writable:
                upstream.resume_reading()
            else:
                upstream.pause_reading()

    # --- endings ---

    def _timed_out(self) -> None:
        self.timer = None
        timeout = self.engine.request_timeout
        self.fail(errors.UpstreamTimeout(f"no complete response within {timeout:g} s"))

    def fail(self, error: errors.ProxyError) -> None:
        """End with a proxy-made response, or by cutting the client if one already started."""
        if self.done:
            return
        endpoint = self.endpoint
        if endpoint is not None and not error.instance:  # say which instance was tried
            error.service, error.instance = endpoint.service, endpoint.instance
        self._release_upstream(abort=True)
        self.status, self.flags = replies.classify(error)
        if self.response_started:
            # Never let a truncated body look complete: the client sees the connection drop.
            self.keep_alive = False
            self.client.abort()
        else:
            if not self.request.complete or self.request.upgrade:
                self.request.discard()
                self.keep_alive = False
            data = replies.render(
                error,
                request_id=self.request_id,
                keep_alive=self.keep_alive,
                head_only=self.head_only,
            )
            self.client.write(data)
        self._finish()

    def cancel(self) -> None:
        """The client went away: drop everything; a tunnel's upstream gets what was sent."""
        if self.done:
            return
        tunnel = self.status == 101
        self._release_upstream(abort=not tunnel)
        if not tunnel:
            self.status, self.flags = 499, "DC"  # downstream disconnect, as Envoy counts it
        self.keep_alive = False
        self._finish()

    def _release_upstream(self, *, abort: bool) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        conn, self.upstream = self.upstream, None
        if conn is not None:
            conn.listener = None
            if abort:
                conn.abort()
            else:
                conn.close()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        routed = self.routed
        self.engine.metrics.request_done(
            routed.service if routed else "",
            routed.route if routed else "",
            self.status,
            self.flags,
            self.engine.loop.time() - self.started,
        )
        self.client.exchange_done(self)


def _nothing() -> None:
    """The end of a tunnel's client side is its close, not a message boundary."""
