"""One request's attempts: which instances were tried, how many retries, until when."""

from __future__ import annotations

import random

from mesh.forwarding.routing import Routed
from mesh.forwarding.service_state import ServiceState
from mesh.resilience import backoff, retry
from mesh.resilience.limits import remaining, try_timeout
from mesh.resilience.outcome import Outcome


class Failover:
    """The retry stage's state for one request; decisions come from mesh.resilience."""

    __slots__ = (
        "connect_timeout",
        "deadline",
        "method",
        "per_try",
        "policy",
        "retries",
        "state",
        "subset",
        "timeout",
        "tried",
    )

    def __init__(self, state: ServiceState, routed: Routed, method: bytes, now: float) -> None:
        resilience = state.policy.resilience
        self.state = state
        self.policy = resilience.retry
        self.method = method
        self.timeout = routed.request_timeout or resilience.request_timeout
        self.deadline = now + self.timeout
        self.connect_timeout = routed.connect_timeout or resilience.connect_timeout
        self.per_try = routed.per_try_timeout or resilience.retry.per_try_timeout
        self.subset = routed.subset
        self.tried: set[str] = set()  # instances tried, excluded from the next pick

        self.retries = 0

    @property
    def may_retry(self) -> bool:
        """Whether a retry is possible at all (so the request body is worth keeping)."""
        return self.retries < self.policy.attempts

    def try_timeout(self, now: float) -> float:
        """How long the next attempt may take (0: the deadline has passed)."""
        return try_timeout(self.per_try, self.deadline, now)

    def next_delay(self, outcome: Outcome, now: float, rng: random.Random) -> float | None:
        """Seconds to wait before trying another instance, or None to give up now.

        A retry goes to an instance this request has not tried: asked again at once, the
        one that just refused, reset, timed out or answered 503 would most likely fail the
        same way, and a sick instance would get more load. With none left, the request
        fails with what it got. (A pooled connection found closed is resent once to the
        same instance, but that is no retry: see Attempt.)
        """
        if not retry.decide(self.policy, outcome, self.retries, self.method):
            return None
        if not self.state.untried(self.subset, self.tried):
            return None
        delay = backoff.delay(self.retries, self.policy.backoff_base, self.policy.backoff_cap, rng)
        if remaining(self.deadline, now) <= delay:
            return None
        if not self.state.budget.try_spend(now):
            return None  # retries would add more than the budget allows: fail instead
        self.retries += 1
        return delay
