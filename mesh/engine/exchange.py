"""One client request through the proxy: route, admit, deadline, attempts, and the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from mesh import clock, errors
from mesh.balance.keys import hash_key
from mesh.engine import access_log, replies
from mesh.engine.attempt import Attempt
from mesh.engine.engine import Engine
from mesh.engine.failover import Failover
from mesh.engine.headers import forward_request_head, received_request_id, render
from mesh.engine.request import Header, Request
from mesh.engine.response import NO_BODY_STATUS, client_head, interim_head, switching_head
from mesh.forwarding.routing import Routed
from mesh.forwarding.service_state import ServiceState
from mesh.messages import RequestRecord
from mesh.resilience import outcome as outcomes
from mesh.resilience.outcome import Outcome


class Client(Protocol):
    """The client connection an exchange answers on (mesh.engine.server.ClientConnection)."""

    write_paused: bool
    proto: bytes  # b"http" or b"https": how the client reached us
    identity: bytes  # the caller's SPIFFE id, when an mTLS listener proved one

    def write(self, data: bytes) -> None: ...

    def set_reading(self, on: bool, *, reason: str) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def exchange_done(self, exchange: Exchange) -> None: ...


class Exchange:
    """One request from its head to the last byte of its answer; each try is an Attempt.

    `start` runs the stages in order. Then attempts follow one another: each picks an
    instance not tried yet; a failure before any byte of the answer reached the client
    goes through the retry decision (policy, budget, deadline, a resendable body) and,
    if allowed, to another instance after a backoff. The client's answer is written
    here: relayed from the attempt that got one, or made by the proxy (mesh.engine.replies).
    """

    __slots__ = (
        "_backoff",
        "_head",
        "_key",
        "_timer",
        "_waiting",
        "attempt",
        "bytes_out",
        "client",
        "delimited",
        "done",
        "ended",
        "engine",
        "failover",
        "flags",
        "head_only",
        "keep_alive",
        "rechunk",
        "request",
        "request_id",
        "response_started",
        "routed",
        "started",
        "state",
        "status",
    )

    def __init__(self, client: Client, request: Request, engine: Engine) -> None:
        self.client = client
        self.request = request
        self.engine = engine
        # How long it takes, on the fine clock: the loop's steps by the millisecond.
        self.started = clock.stopwatch()
        self.ended = 0.0
        self.head_only = request.method == b"HEAD"
        self.keep_alive = request.keep_alive and not engine.draining
        self.done = False
        self.response_started = False
        self.rechunk = False  # the body goes to the client chunked, whatever the upstream sent
        self.delimited = True
        self.status = 0
        self.bytes_out = 0  # response body bytes sent, for the access log and taps
        self.flags = "-"
        self.request_id = b""
        self.routed: Routed | None = None
        self.state: ServiceState | None = None  # set once admitted: a limit slot is held
        self.failover: Failover | None = None
        self.attempt: Attempt | None = None  # the current or the last attempt
        self._head = b""  # the head as sent upstream, built once for every attempt
        self._key: bytes | None = None  # what consistent_hash hashes
        self._timer: asyncio.TimerHandle | None = None  # the request's deadline
        self._backoff: asyncio.TimerHandle | None = None  # the wait before a retry
        # A first call's wait for services this node did not follow yet (once per request).
        self._waiting: asyncio.Task[None] | None = None

    def start(self) -> None:
        """The stages, in order; any of them may answer the request instead."""
        engine, request, now = self.engine, self.request, self.engine.loop.time()
        if request.final:
            self._answer_as_final_recipient()
            return
        try:
            self.routed = routed = engine.router(request, now)  # route, rate limit
            self.state = state = engine.directory.admit(routed.service)  # concurrency limit
        except errors.ProxyError as exc:
            if not self._follow_first(exc):
                self.fail(self._unheard(exc))
            return
        used = engine.used
        if used is not None:  # a service followed on use: it stays while it is called
            used[routed.service] = now
        state.budget.record_request(now)  # retries may add a share of the requests
        self.failover = failover = Failover(state, routed, request.method, now)
        self._timer = engine.loop.call_later(failover.deadline - now, self._timed_out)
        if state.hash_on is not None:
            self._key = hash_key(state.hash_on, request.headers, request.client)
        self._try(now)

    def _follow_first(self, error: errors.ProxyError) -> bool:
        """A request to services this node does not follow yet: follow them, wait (bounded)
        for their members, then start again, once. False: answer `error` now."""
        hook = self.engine.on_unknown
        if hook is None or self._waiting is not None or not isinstance(error, errors.NoRoute):
            return False
        wait = hook(error.unknown) if error.unknown else None
        if wait is None:
            return False
        self._waiting = task = self.engine.loop.create_task(wait)
        task.add_done_callback(self._followed)
        return True

    def _unheard(self, error: errors.ProxyError) -> errors.ProxyError:
        """After a first call's wait, a name still unknown may be a service whose records
        are late as well as no service: the mesh cannot tell which in bounded time, so it
        answers what a client may retry (503 UH), not that the name does not exist."""
        if self._waiting is None or not isinstance(error, errors.NoRoute) or not error.unknown:
            return error
        names = " or ".join(repr(name) for name in error.unknown)
        return errors.NoHealthyUpstream(
            f"no instance of {names} answered yet (followed from this request)",
            service=error.unknown[0],
        )

    def _followed(self, task: asyncio.Task[None]) -> None:
        if not self.done:
            self.start()

    def _try(self, now: float | None = None) -> None:
        """Pick an instance not tried yet and start an attempt on it."""
        self._backoff = None
        engine, failover, routed, state = self.engine, self.failover, self.routed, self.state
        assert failover is not None
        assert routed is not None
        assert state is not None
        # The first attempt begins in the exchange's own turn: so does its duration.
        began = self.started
        if now is None:  # a retry, after its backoff
            now, began = engine.loop.time(), clock.stopwatch()
        try:
            endpoint = engine.directory.pick(
                state, engine.rng, now, routed.subset, failover.tried, self._key
            )
        except errors.ProxyError as exc:
            self.fail(exc)
            return
        failover.tried.add(endpoint.instance)
        self.attempt = attempt = Attempt(
            self, engine, failover, endpoint, state.balancer(routed.subset), now, began
        )
        attempt.start()

    def _retry(self, outcome: Outcome) -> bool:
        """The retry decision, for a failure before the client saw anything."""
        failover, request = self.failover, self.request
        if failover is None or request.upgrade or not request.resendable or self.done:
            return False
        delay = failover.next_delay(outcome, self.engine.loop.time(), self.engine.rng)
        if delay is None:
            return False
        attempt = self.attempt
        if attempt is not None:
            attempt.abandon()
            # Counted under the instance that failed: the one the retry goes away from.
            endpoint = attempt.endpoint
            self.engine.directory.counters.of(endpoint.service, endpoint.instance).retries += 1
        self.client.set_reading(False, reason="upstream")  # until the body can flow again
        self.engine.metrics.resend(failover.state.name, "retry")
        self._backoff = self.engine.loop.call_later(delay, self._try)
        return True

    def instances_gone(self, gone: set[tuple[str, int]], silent: Callable[[str], bool]) -> None:
        """Our instance left routing for its silence before answering: retried on another
        now, as if it had reset, when the retry policy allows.

        A host cut off by a partition never answers and never resets: the request would
        wait for the link or the deadline. Not retried (a POST, no retries left, nobody
        else to try), it keeps waiting: the instance may only be slow to beat. Nor is a
        request on an instance that drains or fails its health check: it still answers.
        """
        attempt = self.attempt
        if (
            attempt is not None
            and attempt.waiting
            and attempt.endpoint.address in gone
            and silent(attempt.endpoint.instance)
        ):
            self._retry(outcomes.RESET)  # counted as a retry away from that instance

    # --- what attempts need (mesh.engine.attempt.Owner) ---

    @property
    def may_retry(self) -> bool:
        return self.failover is not None and self.failover.may_retry

    def upstream_head(self) -> bytes:
        if not self._head:
            routed = self.routed
            assert routed is not None
            self._head, self.request_id = forward_request_head(
                self.request,
                routed.target,
                host=routed.host,
                service=routed.service,
                proto=self.client.proto,
                strip_mesh=self.engine.strip_mesh_headers,
                rng=self.engine.rng,
                consumer=routed.consumer,
                credential=routed.credential,
            )
        return self._head

    def relay_interim(self, status: int, reason: bytes, headers: list[Header]) -> None:
        if self.request.version == b"1.1":  # HTTP/1.0 clients cannot take a 1xx
            self.client.write(interim_head(status, reason, headers))

    def relay_head(self, status: int, reason: bytes, headers: list[Header], upgrade: bool) -> bool:
        request = self.request
        if status == 101:
            return self._switch(reason, headers, upgrade)
        if status >= 500 and self._retry(outcomes.response(status)):
            return False
        # The connection ends with this answer after a declined upgrade (what the client
        # sent after its request was meant for the new protocol), and when it comes before
        # the end of the body (the rest will usually not be read; see attempt_ended).
        ends = request.upgrade or self.engine.draining or not request.complete
        head = client_head(  # raises UpstreamProtocolError: the attempt's failure
            request.version,
            status,
            reason,
            headers,
            bodiless=self.head_only or status in NO_BODY_STATUS,
            keep_alive=self.keep_alive and not ends,
            date=self.engine.date,
        )
        if request.upgrade:
            request.discard()  # the early tunnel bytes never reach the upstream
        self.status = status
        self.response_started = True
        self.rechunk = head.rechunk
        self.delimited = head.delimited
        self.keep_alive = head.keep_alive
        self.client.write(head.data)
        return True

    def _switch(self, reason: bytes, headers: list[Header], upgrade: bool) -> bool:
        """A 101: the connection becomes a tunnel, as long as both sides keep it open."""
        if not (self.request.upgrade and upgrade):
            raise errors.UpstreamProtocolError("101 without an agreed upgrade")
        self.status = 101
        self.response_started = True
        if self._timer is not None:  # a tunnel lives as long as both sides want it
            self._timer.cancel()
            self._timer = None
        self.client.write(switching_head(reason, headers))
        return True

    def relay_body(self, chunk: bytes) -> None:
        self.bytes_out += len(chunk)
        if self.rechunk:
            self.client.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            self.client.write(chunk)

    def relay_upgraded(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self.client.write(data)

    def attempt_ended(
        self, outcome: Outcome | None, error: errors.ProxyError | None, trailers: list[Header]
    ) -> None:
        if error is None:
            if self.status == 101:
                self.client.close()  # the tunnel's upstream side closed
            elif self.rechunk:
                self.client.write(b"0\r\n%s\r\n" % render(trailers))
            if not self.request.complete:
                # The upstream answered before the body ended; the rest of it is not worth
                # reading, and the connection cannot carry another request after it.
                self.request.discard()
                self.keep_alive = False
            self._finish()
            return
        failover = self.failover
        if outcome is not None and failover is not None:
            if self._retry(outcome):
                return
            if failover.retries:
                error = errors.RetriesExhausted(self._located(error), failover.retries + 1)
        self.fail(error)

    # --- from the client connection ---

    def client_writable(self, writable: bool) -> None:
        if self.attempt is not None:
            self.attempt.client_writable(writable)

    def cancel(self) -> None:
        """The client went away: drop everything; a tunnel's upstream gets what was sent."""
        if self.done:
            return
        tunnel = self.status == 101
        if self.attempt is not None:
            self.attempt.abandon(abort=not tunnel, fault=False)
        if not tunnel:
            self.status, self.flags = 499, "DC"  # downstream disconnect, as Envoy counts it
        self.keep_alive = False
        self._finish()

    # --- endings ---

    def _timed_out(self) -> None:
        self._timer = None
        failover = self.failover
        assert failover is not None
        timeout = failover.timeout
        attempt = self.attempt
        if not self.response_started and attempt is not None and attempt.awaiting_client:
            # The instance takes the body as it comes; the client is the one who is late.
            self.fail(errors.ClientTimeout(f"request body incomplete after {timeout:g} s"))
        else:
            self.fail(errors.UpstreamTimeout(f"no complete response within {timeout:g} s"))

    def _answer_as_final_recipient(self) -> None:
        """Max-Forwards is 0: answered here, forwarded nowhere (RFC 9110 §7.6.2)."""
        request = self.request
        if not request.complete:
            request.discard()
            self.keep_alive = False
        self.status = 200
        answer = replies.final_recipient(request, keep_alive=self.keep_alive, date=self.engine.date)
        self.bytes_out = replies.body_length(answer)
        self.client.write(answer)
        self._finish()

    def fail(self, error: errors.ProxyError) -> None:
        """End with a proxy-made response, or by cutting the client if one already started."""
        if self.done:
            return
        self._located(error)
        if self.attempt is not None:
            self.attempt.abandon()
        self.status, self.flags = replies.classify(error)
        if self.response_started:
            # Never let a truncated body look complete: the client sees the connection drop.
            self.keep_alive = False
            self.client.abort()
        else:
            if not self.request.complete or self.request.upgrade:
                self.request.discard()
                self.keep_alive = False
            if not self.request_id:  # answered before any attempt: the log and client agree
                self.request_id = received_request_id(self.request.headers)
            answer = replies.render(
                error,
                request_id=self.request_id,
                keep_alive=self.keep_alive,
                head_only=self.head_only,
                date=self.engine.date,
            )
            self.bytes_out = replies.body_length(answer)
            self.client.write(answer)
        self._finish()

    def _located(self, error: errors.ProxyError) -> errors.ProxyError:
        """Say which instance was tried, when the error does not."""
        attempt = self.attempt
        if attempt is not None and not error.instance:
            error.service, error.instance = attempt.endpoint.service, attempt.endpoint.instance
        return error

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.ended = clock.stopwatch()
        log = self.engine.access_log
        if log is not None:  # off: this check is all it costs
            log.write(self.record(log.timestamp()))
        taps = self.engine.taps
        if taps is not None:  # no tap open: this check is all it costs
            taps.offer(self)
        self.attempt = None  # it holds us: a cycle left for the collector costs CPU
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        if self._waiting is not None:
            self._waiting.cancel()
        if self.state is not None:
            self.state.limit.release()
        routed = self.routed
        self.engine.metrics.request_done(
            routed.service if routed else "",
            routed.route if routed else "",
            self.status,
            self.flags,
            self.ended - self.started,
        )
        self.client.exchange_done(self)

    @property
    def method(self) -> bytes:
        return self.request.method

    @property
    def target(self) -> bytes:
        return self.request.target

    def record(self, time: str) -> RequestRecord:
        """What the access log writes and taps show of this request, once it ended."""
        request, routed, attempt, failover = self.request, self.routed, self.attempt, self.failover
        ended = self.ended
        return access_log.request_record(
            time,
            self.engine.directory.node,
            request_id=self.request_id,
            method=request.method,
            authority=request.host,
            target=request.target,
            route=routed.route if routed is not None else "",
            service=routed.service if routed is not None else "",
            instance=attempt.endpoint.instance if attempt is not None else "",
            attempts=len(failover.tried) if failover is not None else 0,
            status=self.status,
            flags=self.flags,
            seconds=ended - self.started,
            upstream_seconds=None if attempt is None else ended - attempt.began,
            bytes_in=request.body_seen,
            bytes_out=self.bytes_out,
            consumer=routed.consumer if routed is not None else None,
            peer=self.client.identity,
        )
