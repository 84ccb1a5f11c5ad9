"""One try of a request on one instance: connect, send, relay the answer, end exactly once."""

from __future__ import annotations

import asyncio
from typing import Protocol

from mesh import clock, errors
from mesh.balance.balancer import Balancer
from mesh.balance.endpoint import Endpoint
from mesh.engine.engine import Engine
from mesh.engine.failover import Failover
from mesh.engine.headers import render
from mesh.engine.request import Header, Request
from mesh.engine.upstream import UpstreamConnection
from mesh.resilience import outcome as outcomes
from mesh.resilience.outcome import Outcome

# A response this proxy cannot relay (malformed, or framed in a way it cannot pass on
# faithfully) is the instance's failure, whatever its parser tripped on: it counts as a
# 502 from it (a gateway error to outlier detection; retried only when the retry
# conditions name 502, like any 502; an idempotent request alone, as it reached the
# instance).
MALFORMED = outcomes.response(502)


class Client(Protocol):
    """The client connection's flow control, as an attempt drives it (mesh.engine.server)."""

    write_paused: bool

    def set_reading(self, on: bool, *, reason: str) -> None: ...


class Owner(Protocol):
    """What an attempt serves and reports to: its exchange (mesh.engine.exchange)."""

    delimited: bool  # the relayed response has a length (else it ends when the upstream closes)
    head_only: bool  # a HEAD request: the response has no body whatever it says

    @property
    def request(self) -> Request: ...

    @property
    def client(self) -> Client: ...

    @property
    def may_retry(self) -> bool:
        """A retry is still possible, so the request body is worth keeping to resend."""
        ...

    def upstream_head(self) -> bytes:
        """The request head to send; the same bytes (request id included) on every try."""
        ...

    def relay_interim(self, status: int, reason: bytes, headers: list[Header]) -> None: ...

    def relay_head(self, status: int, reason: bytes, headers: list[Header], upgrade: bool) -> bool:
        """False: not relayed (a retry took over): stop here. Raises UpstreamProtocolError
        for a head it cannot relay."""
        ...

    def relay_body(self, chunk: bytes) -> None: ...

    def relay_upgraded(self, data: bytes) -> None: ...

    def attempt_ended(
        self, outcome: Outcome | None, error: errors.ProxyError | None, trailers: list[Header]
    ) -> None:
        """The attempt's one call back. `error` None: the response was relayed whole (or a
        tunnel closed). With an `outcome`: the instance failed before anything reached the
        client. Without one: the request cannot go on (mid-response, or not resendable)."""
        ...


class Attempt:
    """Sends the request on one upstream connection and relays its response to the owner.

    It ends in one of two ways: it calls `owner.attempt_ended` once, or its owner
    abandons it (deadline, client gone, a retry decided on the response head). Either
    way the balancer hears `on_end` once and the connection is given back or dropped.
    A pooled connection the upstream closed before answering is replaced by a fresh one
    to the same instance, once, without counting as a failure.

    """

    __slots__ = (
        "_connecting",
        "_timer",
        "balancer",
        "began",
        "client",
        "conn",
        "counters",
        "done",
        "endpoint",
        "engine",
        "failover",
        "head_only",
        "owner",
        "request",
        "stale_retry",
        "started",
        "status",
    )

    def __init__(
        self,
        owner: Owner,
        engine: Engine,
        failover: Failover,
        endpoint: Endpoint,
        balancer: Balancer,
        now: float,
        began: float,
    ) -> None:
        self.owner = owner
        self.request = owner.request
        self.client = owner.client
        self.engine = engine
        self.failover = failover
        self.endpoint = endpoint
        self.balancer = balancer
        self.counters = engine.directory.counters.of(endpoint.service, endpoint.instance)
        self.started = now  # on the loop's clock, for the try's timers
        self.began = began  # on clock.stopwatch, for how long it took
        self.head_only = owner.head_only
        self.conn: UpstreamConnection | None = None
        self.done = False
        self.stale_retry = False  # a reused connection may turn out closed: resend once
        self.status = 0  # of the response relayed to the client; 0 until then
        self._timer: asyncio.TimerHandle | None = None  # the per-try timeout
        self._connecting: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> bool:
        """Under way with not a byte of an answer yet (connecting, or sent and waiting)."""
        conn = self.conn
        return not self.done and not self.status and (conn is None or not conn.answered)

    def start(self) -> None:
        """Take a pooled connection or open one, within the request's time limits."""
        failover, now, loop = self.failover, self.started, self.engine.loop
        self.balancer.on_start(self.endpoint, now)
        self.counters.active += 1
        if failover.per_try is not None:
            self._timer = loop.call_later(failover.try_timeout(now), self._timed_out)
        conn = self.engine.pools.take(self.endpoint.address)
        if conn is not None:
            self._attach(conn)
        else:
            self._connect(min(failover.connect_timeout, failover.try_timeout(now) or 0.001))

    # --- the way out ---

    def _connect(self, timeout: float) -> None:
        self._connecting = self.engine.loop.create_task(self._open(timeout))

    async def _open(self, timeout: float) -> None:
        endpoint, tls = self.endpoint, self.engine.upstream_tls
        check = tls(endpoint.service) if tls is not None and endpoint.inbound_port else None
        try:
            conn = await self.engine.pools.connect(endpoint.address, timeout, check)
        except errors.UpstreamRefused as exc:
            self._failed(outcomes.REFUSED, exc)
            return
        except (errors.UpstreamConnectFailure, errors.UpstreamTimeout) as exc:
            self._failed(outcomes.CONNECT_FAILURE, exc)
            return
        if self.done:
            conn.close()
            return
        self._attach(conn)

    def _attach(self, conn: UpstreamConnection) -> None:
        request, client = self.request, self.client
        resend = request.sink is not None  # part of the body went to an earlier connection
        if resend and not request.resendable:  # ... and was not kept
            self._stop(None, errors.UpstreamReset("connection lost mid-request"))
            conn.close()
            return
        self.conn = conn
        conn.attach(self)
        if not conn.writable:
            client.set_reading(False, reason="upstream")
        if client.write_paused:
            conn.pause_reading()
        self.stale_retry = conn.uses > 1
        conn.write(self.owner.upstream_head())
        if resend:
            for chunk in request.kept or ():
                self.send_body(chunk)
            request.drain_to(self.send_body, self.end_body)
            if conn.writable:
                client.set_reading(True, reason="upstream")  # paused between connections
        elif request.has_body:
            if self.stale_retry or self.owner.may_retry:
                request.keep(self.engine.retry_body_bytes)
            request.drain_to(self.send_body, self.end_body)
            client.set_reading(True, reason="body")  # what it buffered is upstream now

    def send_body(self, chunk: bytes) -> None:
        conn = self.conn
        if conn is None:
            return  # between connections: the request keeps the chunk to resend it
        if self.request.chunked:
            conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            conn.write(chunk)

    def end_body(self) -> None:
        conn = self.conn
        if conn is not None and self.request.chunked:
            conn.write(b"0\r\n%s\r\n" % render(self.request.trailers))

    @property
    def awaiting_client(self) -> bool:
        """The body is still arriving and the upstream takes it as it comes: a deadline that
        passes now is the client's doing, not the instance's."""
        conn = self.conn
        return conn is not None and conn.writable and not self.request.complete

    def client_writable(self, writable: bool) -> None:
        """The client's back-pressure reaches the upstream."""
        conn = self.conn
        if conn is not None:
            if writable:
                conn.resume_reading()
            else:
                conn.pause_reading()

    # --- the way back: mesh.engine.upstream.ResponseListener ---

    def on_interim(self, status: int, reason: bytes, headers: list[Header]) -> None:
        self.owner.relay_interim(status, reason, headers)

    def on_response_head(
        self, status: int, reason: bytes, headers: list[Header], upgrade: bool
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            relayed = self.owner.relay_head(status, reason, headers, upgrade)
        except errors.UpstreamProtocolError as exc:
            self._failed(MALFORMED, exc)
            return
        self._observe(outcomes.response(status))
        if not relayed:
            return
        self.status = status
        if status == 101:  # from here on bytes flow as they are, both ways
            conn = self.conn
            assert conn is not None
            self.request.drain_to(conn.write, _nothing)
            self.client.set_reading(True, reason="body")

    def on_response_body(self, chunk: bytes) -> None:
        self.owner.relay_body(chunk)

    def on_upgraded(self, data: bytes) -> None:
        self.owner.relay_upgraded(data)

    def on_response_end(self, trailers: list[Header], reusable: bool) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            if reusable and self.request.complete:
                self.engine.pools.give_back(conn, self.engine.loop.time())
            else:
                conn.close()
        self._end(ok=self.status < 500)
        self.owner.attempt_ended(None, None, trailers)

    def on_upstream_lost(self, exc: Exception | None) -> None:
        if self.done:
            return
        conn, self.conn = self.conn, None
        if self.status == 101:
            self._stop(None, None)  # the tunnel's upstream side closed
        elif self.status:  # the response is on its way to the client
            if exc is None and not self.owner.delimited:
                self.on_response_end([], reusable=False)  # a read-to-close body ends here
            elif isinstance(exc, errors.ProxyError):
                self._stop(None, exc)
            else:
                self._stop(None, errors.UpstreamReset("upstream closed mid-response"))
        elif (
            self.stale_retry and conn is not None and not conn.answered and self.request.resendable
        ):
            self.stale_retry = False
            self.client.set_reading(False, reason="upstream")  # until the body can flow again
            self.engine.metrics.resend(self.endpoint.service, "stale-connection")
            self._connect(self.failover.connect_timeout)
        elif isinstance(exc, errors.UpstreamProtocolError):
            self._failed(MALFORMED, exc)
        else:
            why = f" ({type(exc).__name__})" if exc else ""
            error = errors.UpstreamReset(f"upstream closed before responding{why}")
            self._failed(outcomes.RESET, error)

    def on_upstream_writable(self, writable: bool) -> None:
        self.client.set_reading(writable, reason="upstream")

    # --- endings ---

    def _timed_out(self) -> None:
        self._timer = None
        if self.status or self.done:
            return
        if self.awaiting_client:  # no fault of the instance: not observed, not retried
            self._stop(None, errors.ClientTimeout("request body incomplete at the per-try timeout"))
        else:
            self._failed(outcomes.TIMEOUT, errors.UpstreamTimeout("per-try timeout"))

    def _failed(self, outcome: Outcome, error: errors.ProxyError) -> None:
        """The instance failed before anything reached the client: the owner may retry."""
        if self.done:
            return
        self._observe(outcome)
        self._stop(outcome, error)

    def _stop(self, outcome: Outcome | None, error: errors.ProxyError | None) -> None:
        self._release(abort=True)
        self._end(ok=False)
        self.owner.attempt_ended(outcome, error, [])

    def abandon(self, *, abort: bool = True, fault: bool = True) -> None:
        """The owner ends the attempt (its client left, the deadline passed, a retry);
        `fault`: the instance's (a client that left is not)."""
        if not self.done:
            self._release(abort=abort)
            self._end(ok=False, fault=fault)

    def _release(self, *, abort: bool) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.listener = None
            if abort:
                conn.abort()
            else:
                conn.close()

    def _end(self, *, ok: bool, fault: bool = True) -> None:
        self.done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        took = clock.stopwatch() - self.began
        self.counters.ended_after(took, failed=not ok and fault)
        try:  # noqa: SIM105 - suppress() would cost a context manager per request
            self.balancer.on_end(self.endpoint, self.engine.loop.time(), took, ok)
        except KeyError:
            pass  # it left the balancer's set meanwhile

    def _observe(self, outcome: Outcome) -> None:
        """Outlier detection here, and through it evidence for the rest of the mesh."""
        self.counters.attempt(outcome)
        self.engine.directory.observe(
            self.failover.state, self.endpoint, outcome, self.engine.loop.time()
        )


def _nothing() -> None:
    """The end of a tunnel's client side is its close, not a message boundary."""
