"""The retry stage of an exchange: a failure before the client saw anything, tried elsewhere."""

from __future__ import annotations

from mesh import errors
from mesh.engine.exchange_state import ExchangeState
from mesh.resilience import outcome as outcomes
from mesh.resilience.outcome import Outcome


class Retrying(ExchangeState):
    """Outcomes go to outlier detection; retriable ones to another instance after a backoff."""

    __slots__ = ()

    def _try_timed_out(self) -> None:
        self._try_timer = None
        if not self.response_started and not self.done:
            self._attempt_failed(outcomes.TIMEOUT, errors.UpstreamTimeout("per-try timeout"))

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
            try:  # noqa: SIM105 - suppress() would cost a context manager per request
                balancer.on_end(endpoint, now, now - self._attempt_start, ok)
            except KeyError:
                pass  # it left the balancer's set meanwhile

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
            error = errors.RetriesExhausted(error, failover.retries + 1)
        self.fail(error)

    def _located(self, error: errors.ProxyError) -> errors.ProxyError:
        endpoint = self.endpoint
        if endpoint is not None and not error.instance:  # say which instance was tried
            error.service, error.instance = endpoint.service, endpoint.instance
        return error
