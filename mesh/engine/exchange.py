"""One request forwarded to one instance and its response relayed back, by callbacks."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mesh import errors
from mesh.balance.endpoint import Endpoint
from mesh.engine import replies
from mesh.engine.headers import HOP_BY_HOP, Header, connection_tokens, forward_request_head, render
from mesh.engine.request import Request
from mesh.engine.upstream import UpstreamConnection

if TYPE_CHECKING:
    from mesh.engine.engine import Engine, Routed
    from mesh.engine.server import ClientConnection

_NO_BODY_STATUS = frozenset({204, 304})


class Exchange:
    """Drives one request: route, pick, connect, stream both ways, finish exactly once."""

    __slots__ = (
        "_connecting",
        "_upgrade_backlog",
        "client",
        "done",
        "endpoint",
        "engine",
        "flags",
        "head_only",
        "keep_alive",
        "rechunk",
        "request",
        "request_id",
        "response_started",
        "routed",
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
        self.keep_alive = request.keep_alive
        self.rechunk = False
        self.upstream_delimited = True
        self.status = 0
        self.flags = "-"
        self.request_id = b""
        self.routed: Routed | None = None
        self.endpoint: Endpoint | None = None
        self.upstream: UpstreamConnection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = engine.loop.time()
        self._connecting: asyncio.Task[None] | None = None
        self._upgrade_backlog: list[bytes] | None = [] if request.upgrade else None

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
        except TimeoutError:
            self.fail(self._error(errors.UpstreamTimeout, "connect timed out"))
            return
        except OSError as exc:
            self.fail(
                self._error(errors.UpstreamConnectFailure, f"connect failed: {exc.strerror or exc}")
            )
            return
        if self.done:
            conn.close()
            return
        self._attach(conn)

    def _error(self, kind: type[errors.ProxyError], detail: str) -> errors.ProxyError:
        endpoint = self.endpoint
        return kind(
            detail,
            service=endpoint.service if endpoint else "",
            instance=endpoint.instance if endpoint else "",
        )

    def _attach(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        conn.attach(self)
        request = self.request
        routed = self.routed
        assert routed is not None
        lines, self.request_id = forward_request_head(
            request.method,
            routed.target,
            request.headers,
            client_ip=request.client,
            proto=b"http",
            strip_mesh=self.engine.strip_mesh_headers,
            rng=self.engine.rng,
        )
        if request.chunked:
            lines += b"transfer-encoding: chunked\r\n"
        if request.upgrade:
            lines += b"connection: upgrade\r\nupgrade: %s\r\n" % _header(
                request.headers, b"upgrade"
            )
        conn.write(lines + b"\r\n")
        if request.upgrade:
            backlog, self._upgrade_backlog = self._upgrade_backlog or [], None
            for data in backlog:
                conn.write(data)
        elif request.has_body:
            request.drain_to(self._send_body, self._end_body)

    def _send_body(self, chunk: bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            return
        if self.request.chunked:
            upstream.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            upstream.write(chunk)

    def _end_body(self) -> None:
        if self.upstream is not None and self.request.chunked:
            self.upstream.write(b"0\r\n%s\r\n" % render(self.request.trailers))

    def client_data(self, data: bytes) -> None:
        """Raw bytes from the client after an upgrade request (the tunnel's first bytes)."""
        if self._upgrade_backlog is not None:
            self._upgrade_backlog.append(data)
        elif self.upstream is not None:
            self.upstream.write(data)

    # --- ResponseListener ---

    def on_interim(self, status: int, headers: list[Header]) -> None:
        if self.request.version == b"1.1":
            self.client.write(
                b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, _reason(status), render(headers))
            )

    def on_response_head(
        self, status: int, reason: bytes, headers: list[Header], delimited: bool
    ) -> None:
        self.status = status
        self.response_started = True
        self.upstream_delimited = delimited
        request = self.request
        http10 = request.version == b"1.0"
        drop = connection_tokens(headers)
        out = [b"HTTP/%s %d %s\r\n" % (request.version, status, reason or _reason(status))]
        chunked = False
        for name, value in headers:
            lname = name.lower()
            if lname in HOP_BY_HOP or lname in drop:
                if lname == b"transfer-encoding":
                    chunked = True
                continue
            out.append(b"%s: %s\r\n" % (name, value))
        if status == 101:
            out.append(b"connection: upgrade\r\nupgrade: %s\r\n" % _header(headers, b"upgrade"))
            self.client.write(b"".join(out) + b"\r\n")
            return
        bodiless = self.head_only or status in _NO_BODY_STATUS
        if not bodiless and (chunked or not delimited):
            if http10:
                self.keep_alive = False  # a 1.0 client reads to the close
            else:
                self.rechunk = True
                out.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        elif http10:
            out.append(b"connection: keep-alive\r\n")
        self.client.write(b"".join(out) + b"\r\n")

    def on_response_body(self, chunk: bytes) -> None:
        if self.rechunk:
            self.client.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            self.client.write(chunk)

    def on_response_end(self, trailers: list[Header], reusable: bool) -> None:
        if self.rechunk:
            self.client.write(b"0\r\n%s\r\n" % render(trailers))
        conn, self.upstream = self.upstream, None
        if conn is not None:
            if reusable and self.request.complete and not self.done:
                self.engine.pools.give_back(conn, self.engine.loop.time())
            else:
                conn.close()
        if not self.request.complete:
            # The upstream answered before the body ended; the rest of it is not worth
            # reading, and the connection cannot carry another request after it.
            self.request.discard()
            self.keep_alive = False
        self._finish()

    def on_upgraded(self, data: bytes) -> None:
        self.client.write(data)

    def on_upstream_lost(self, exc: Exception | None) -> None:
        if self.done:
            return
        self.upstream = None
        if self.status == 101:
            self.client.close()
            self._finish()
        elif self.response_started and not self.upstream_delimited and exc is None:
            self.on_response_end([], reusable=False)  # a close-delimited body ends here
        elif self.response_started:
            self.fail(self._error(errors.UpstreamReset, "upstream closed mid-response"))
        else:
            detail = (
                f"upstream closed before responding ({type(exc).__name__})"
                if exc
                else ("upstream closed before responding")
            )
            self.fail(self._error(errors.UpstreamReset, detail))

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
        self.fail(
            self._error(
                errors.UpstreamTimeout, f"no response within {self.engine.request_timeout:g} s"
            )
        )

    def fail(self, error: errors.ProxyError) -> None:
        """End with a proxy-made response, or by closing the client if one already started."""
        if self.done:
            return
        self._release_upstream()
        if self.response_started:
            # Never let a truncated body look complete: the client sees the connection drop.
            self.status, self.flags = replies.classify(error)[0], replies.classify(error)[1]
            self.keep_alive = False
            self.client.abort()
        else:
            if not self.request.complete:
                self.request.discard()
                self.keep_alive = False
            self.status, self.flags, data = replies.render(
                error,
                request_id=self.request_id,
                keep_alive=self.keep_alive,
                head_only=self.head_only,
            )
            self.client.write(data)
        self._finish()

    def cancel(self) -> None:
        """The client went away: drop everything, count it as downstream disconnect."""
        if self.done:
            return
        self._release_upstream()
        self.status, self.flags = 499, "DC"
        self.keep_alive = False
        self._finish()

    def _release_upstream(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        conn, self.upstream = self.upstream, None
        if conn is not None:
            conn.listener = None
            conn.abort()

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


def _header(headers: list[Header], lname: bytes) -> bytes:
    for name, value in headers:
        if name.lower() == lname:
            return value
    return b""


_STATUS_REASONS: dict[int, bytes] = {}


def _reason(status: int) -> bytes:
    reason = _STATUS_REASONS.get(status)
    if reason is None:
        from http import HTTPStatus

        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b"Unknown"
        _STATUS_REASONS[status] = reason
    return reason
