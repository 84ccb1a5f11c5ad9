"""The response's way back: upstream parser events relayed to the client, by callbacks."""

from __future__ import annotations

from mesh import errors
from mesh.engine.exchange_state import ExchangeState
from mesh.engine.headers import Header, render
from mesh.engine.response import NO_BODY_STATUS, client_head, interim_head, switching_head
from mesh.resilience import outcome as outcomes


class Relay(ExchangeState):
    """The ResponseListener half of an exchange."""

    __slots__ = ()

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


def _nothing() -> None:
    """The end of a tunnel's client side is its close, not a message boundary."""
