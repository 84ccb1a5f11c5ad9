"""One request forwarded to one instance and its response relayed back, by callbacks."""

from __future__ import annotations

from mesh import errors
from mesh.balance.endpoint import Endpoint
from mesh.balance.keys import hash_key
from mesh.engine import replies
from mesh.engine.failover import Failover
from mesh.engine.headers import forward_request_head, render
from mesh.engine.relay import Relay
from mesh.engine.retrying import Retrying
from mesh.engine.upstream import UpstreamConnection
from mesh.resilience import outcome as outcomes


class Exchange(Relay, Retrying):
    """Drives one request: route, pick, connect, stream both ways, finish exactly once.

    Stages, in order: route (and its rate limit), concurrency limit, deadline, then
    attempts: pick an instance not tried yet, connect, send; a failure before any byte
    of the answer reached the client goes through the retry decision (mesh.resilience)
    and, if allowed, to another instance after a backoff. A request written to a reused
    connection the upstream had already closed is sent again on a fresh one without
    counting as a failure. Retries need the body at hand: none, or one no larger than
    `retry_body_bytes`.
    """

    __slots__ = ()

    # --- start ---

    def start(self) -> None:
        engine = self.engine
        now = self.started
        try:
            self.routed = routed = engine.router(self.request)
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
        if state.hash_on is not None:
            self._key = hash_key(state.hash_on, self.request.headers, self.request.client)
        self.timer = engine.loop.call_later(failover.deadline - now, self._timed_out)
        self._attempt(now)

    def _attempt(self, now: float | None = None) -> None:
        """Pick an instance (another one on a retry) and send the request to it."""
        engine, failover, routed = self.engine, self.failover, self.routed
        assert failover is not None
        assert routed is not None
        self._try_timer = None
        if now is None:  # a retry, after its backoff
            now = engine.loop.time()
        state = self.state
        assert state is not None
        try:
            endpoint = engine.directory.pick_from(
                state, engine.rng, now, routed.subset, failover.tried, self._key
            )
        except errors.ProxyError as exc:
            self.fail(exc)
            return
        self.endpoint = endpoint
        failover.tried.add(endpoint.instance)
        self._balancer = balancer = state.balancer(routed.subset)

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
        if self._balancer is not None:
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
