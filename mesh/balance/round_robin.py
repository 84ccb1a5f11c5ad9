"""Round robin: each endpoint in turn; nginx's smooth weighted round robin when weights differ."""

from __future__ import annotations

import math
from collections.abc import Sequence, Set
from random import Random

from mesh.balance.endpoint import Endpoint, allowed
from mesh.balance.slow_start import Ramp

# Bounds the work of planning one period (its length times the endpoint count), done when
# the weights change; past it the weights are scaled down, so shares stay within about
# 1/(2 * period) of exact.
PLAN_BUDGET = 1 << 14


def units(weights: Sequence[float], cap: int) -> list[int]:
    """Whole weights in the same proportions, in lowest terms, summing to about `cap` at most."""
    whole = [round(w) for w in weights]
    if any(w != x for w, x in zip(whole, weights, strict=True)) or sum(whole) > cap:
        scale = cap / sum(weights)
        whole = [max(1, round(w * scale)) for w in weights]
    common = math.gcd(*whole)
    return [w // common for w in whole]


def plan(weights: Sequence[float]) -> Sequence[int]:
    """One period of the pick order, as endpoint indexes: nginx's smooth weighted round robin.

    Each step every endpoint gains its weight, the richest is picked and pays the total:
    picks spread evenly (5:1 gives a a a b a a), not in runs (a a a a a b).
    """
    count = len(weights)
    shares = units(weights, max(count, PLAN_BUDGET // max(count, 1)))
    if len(set(shares)) <= 1:
        return range(count)
    total = sum(shares)
    current = [0] * count
    order = []
    for _ in range(total):
        best = 0
        for i, share in enumerate(shares):
            current[i] += share
            if current[i] > current[best]:
                best = i
        current[best] -= total
        order.append(best)
    return tuple(order)


class RoundRobin:
    """Walks a precomputed plan: O(1) per pick."""

    __slots__ = ("_endpoints", "_next", "_plan", "_ramp")

    def __init__(self, ramp: Ramp | None = None) -> None:
        self._ramp = ramp or Ramp()
        self._endpoints: tuple[Endpoint, ...] = ()
        self._plan: Sequence[int] = ()
        self._next = -1  # position in the plan; -1 until the first pick places it

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._ramp.reset(self._endpoints)
        self._plan = plan(self._ramp.weights)

    def pick(
        self, rng: Random, now: float, key: bytes | None = None, exclude: Set[str] = frozenset()
    ) -> Endpoint:
        ramp = self._ramp
        if now >= ramp.due:
            ramp.refresh(now)
            self._plan = plan(ramp.weights)
        order = self._plan
        at = self._next
        if at < 0:
            # Start somewhere random, or proxies started together would hit the same
            # endpoints in lockstep.
            at = int(rng.random() * len(order))
        at %= len(order)  # wraps at the end, and after a shorter plan replaced this one
        if exclude:
            kept = set(allowed(self._endpoints, exclude))
            while order[at] not in kept:
                at = (at + 1) % len(order)
        self._next = at + 1
        return self._endpoints[order[at]]

    def in_flight(self, instance: str) -> int | None:
        return None  # picks do not depend on load: it is not counted

    def on_start(self, endpoint: Endpoint, now: float) -> None:
        """Round robin keeps no state per request."""

    def on_end(self, endpoint: Endpoint, now: float, rtt: float, ok: bool) -> None:
        """Round robin keeps no state per request."""
