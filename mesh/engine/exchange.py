"""One request forwarded to one instance and its response relayed back, by callbacks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from mesh import errors
from mesh.balance.balancer import Balancer
from mesh.balance.endpoint import Endpoint
from mesh.balance.keys import hash_key
from mesh.engine import replies
from mesh.engine.failover import Failover
from mesh.engine.headers import Header, forward_request_head, render
from mesh.engine.request import Request
from mesh.engine.response import NO_BODY_STATUS, client_head, interim_head, switching_head
from mesh.engine.upstream import UpstreamConnection
from mesh.resilience import outcome as outcomes
from mesh.resilience.outcome import Outcome
from mesh.service_state import ServiceState

if TYPE_CHECKING:
    from mesh.engine.engine import Engine, Routed
    from mesh.engine.server import ClientConnection


class Exchange:
    """Drives one request: route, pick, connect, stream both ways, finish exactly once.

    Stages, in order: route (and its rate limit), concurrency limit, deadline, then
    attempts: pick an instance not tried yet, connect, send; a failure before any byte
    of the answer reached the client goes through the retry decision (mesh.resilience)
    and, if allowed, to another instance after a backoff. A request written to a reused
    connection the upstream had already closed is sent again on a fresh one without
    counting as a failure. Retries need the body at hand: none, or one no larger than
    `retry_body_bytes`.
    """

    __slots__ = (
        "_attempt_start",
        "_balancer",
        "_connecting",
        "_key",
        "_try_timer",
        "client",
        "done",
        "endpoint",
        "engine",
        "failover",
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
        "state",
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
        self.state: ServiceState | None = None
        self.failover: Failover | None = None
        self.endpoint: Endpoint | None = None
        self._balancer: Balancer | None = None
        self._attempt_start = 0.0
        self._try_timer: asyncio.TimerHandle | None = None
        self._key: bytes | None = None
        self.upstream: UpstreamConnection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = engine.loop.time()
        self._connecting: asyncio.Task[None] | None = None

    # --- start ---

    def start(self) -> None:
        engine = self.engine
        now = self.started
        try:
            self.routed = routed = engine.route(self.request)
            state = engine.directory.state(routed.service)
            if state is None:
                raise errors.NoRoute(f"no service named {routed.service!r}", service=routed.service)
            if not state.limit.try_acquire():
                raise errors.Overflow(
                    f"{state.limit.limit} requests to {routed.service!r} already in flight",
                    service=routed.service,
                )
        except errors.ProxyError as exc:
            self.fail(exc)
            return
        self.state = state
        state.budget.record_request(now)
        self.failover = failover = Failover(state, routed, self.request.method, now)
        hash_on = state.policy.balance.hash_on
        if state.policy.balance.algorithm == "consistent_hash":
            self._key = hash_key(hash_on, self.request.headers, self.request.client)
        self.timer = engine.loop.call_later(failover.deadline - now, self._timed_out)
        self._attempt()

    def _attempt(self) -> None:
        """Pick an instance (another one on a retry) and send the request to it."""
        engine, failover, routed = self.engine, self.failover, self.routed
        assert failover is not None
        assert routed is not None
        self._try_timer = None
        now = engine.loop.time()
        try:
            endpoint = engine.directory.pick(
                routed.service,
                engine.rng,
                now,
                subset=routed.subset,
                exclude=failover.tried,
                key=self._key,
            )
        except errors.ProxyError as exc:
            self.fail(exc)
            return
        self.endpoint = endpoint
        failover.tried.append(endpoint.instance)
        assert self.state is not None
        self._balancer = balancer = self.state.balancer(routed.subset)
        balancer.on_start(endpoint, now)
        self._attempt_start = now
        if failover.per_try is not None:
            self._try_timer = engine.loop.call_later(failover.try_timeout(now), self._try_timed_out)
        conn = engine.pools.take(endpoint.address)
        if conn is not None:
            self._attach(conn)
        else:
            timeout = min(failover.connect_timeout, failover.try_timeout(now) or 0.001)
            self._connecting = engine.loop.create_task(self._open(endpoint, timeout))

    async def _open(self, endpoint: Endpoint, timeout: float) -> None:
        try:
            conn = await self.engine.pools.connect(endpoint.address, timeout)
        except errors.UpstreamRefused as exc:
            self._attempt_failed(outcomes.REFUSED, exc)
            return
        except (errors.UpstreamConnectFailure, errors.UpstreamTimeout) as exc:
            self._attempt_failed(outcomes.CONNECT_FAILURE, exc)
            return
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
            if request.complete and request.has_body:
                self._end_body()
            client.set_reading(True, reason="upstream")
            return
        routed = self.routed
        assert routed is not None
        self.head, self.request_id = forward_request_head(
            request,
            routed.target,
            host=routed.host,
            service=routed.service,
            proto=b"http",
            strip_mesh=self.engine.strip_mesh_headers,
            rng=self.engine.rng,
        )
        conn.write(self.head)
        self.stale_retry = conn.uses > 1
        if request.has_body:
            failover = self.failover
            if self.stale_retry or (failover is not None and failover.may_retry):
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
        if self._try_timer is not None:
            self._try_timer.cancel()
            self._try_timer = None
        outcome = outcomes.response(status)
        if status >= 500 and self._retry_instead(outcome):
            return
        self._observe(outcome)
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
        self._end_attempt(ok=self.status < 500)
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
            timeout = self.failover.connect_timeout if self.failover else 1.0
            self._connecting = self.engine.loop.create_task(self._open(endpoint, timeout))

        elif isinstance(exc, errors.UpstreamProtocolError):
            self._attempt_failed(outcomes.RESET, exc)
        elif isinstance(exc, errors.ProxyError):
            self.fail(exc)
        else:
            why = f" ({type(exc).__name__})" if exc else ""
            self._attempt_failed(
                outcomes.RESET, errors.UpstreamReset(f"upstream closed before responding{why}")
            )

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
        failover = self.failover
        timeout = failover.deadline - self.started if failover else self.engine.request_timeout
        self.fail(errors.UpstreamTimeout(f"no complete response within {timeout:g} s"))

    def _try_timed_out(self) -> None:
        self._try_timer = None
        if not self.response_started and not self.done:
            self._attempt_failed(outcomes.TIMEOUT, errors.UpstreamTimeout("per-try timeout"))

    # --- failover ---

    def _observe(self, outcome: Outcome) -> None:
        """Tell outlier detection (and, through it, the mesh) how the attempt went."""
        endpoint, state = self.endpoint, self.state
        if endpoint is not None and state is not None:
            self.engine.directory.observe(state, endpoint, outcome, self.engine.loop.time())

    def _end_attempt(self, *, ok: bool) -> None:
        balancer, endpoint = self._balancer, self.endpoint
        self._balancer = None
        if self._try_timer is not None:
            self._try_timer.cancel()
            self._try_timer = None
        if balancer is not None and endpoint is not None:
            now = self.engine.loop.time()
            with contextlib.suppress(KeyError):  # it left the balancer's set meanwhile
                balancer.on_end(endpoint, now, now - self._attempt_start, ok)

    def _retry_instead(self, outcome: Outcome) -> bool:
        """A failure before the client saw anything: try another instance if allowed."""
        failover, request = self.failover, self.request
        if failover is None or request.upgrade or not request.resendable or self.done:
            return False
        delay = failover.next_delay(outcome, self.engine.loop.time(), self.engine.rng)
        if delay is None:
            return False
        self._observe(outcome)
        self._end_attempt(ok=False)
        self._release_upstream(abort=True)
        self.client.set_reading(False, reason="upstream")  # until the body can flow again
        self.engine.metrics.attempt(self.routed.service if self.routed else "", "retried")
        self._try_timer = self.engine.loop.call_later(delay, self._attempt)
        return True

    def _attempt_failed(self, outcome: Outcome, error: errors.ProxyError) -> None:
        if self.done:
            return
        if self._retry_instead(outcome):
            return
        self._observe(outcome)
        failover = self.failover
        if failover is not None and failover.retries:
            error = self._located(error)
            error = errors.RetriesExhausted(error, len(failover.tried))
        self.fail(error)

    def _located(self, error: errors.ProxyError) -> errors.ProxyError:
        endpoint = self.endpoint
        if endpoint is not None and not error.instance:  # say which instance was tried
            error.service, error.instance = endpoint.service, endpoint.instance
        return error

    def fail(self, error: errors.ProxyError) -> None:
        """End with a proxy-made response, or by cutting the client if one already started."""
        if self.done:
            return
        self._located(error)
        self._end_attempt(ok=False)
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
        if self._try_timer is not None:
            self._try_timer.cancel()
            self._try_timer = None
        self._end_attempt(ok=False)
        if self.state is not None:
            self.state.limit.release()
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
