"""Slow start: a newly routable endpoint's weight ramps up to full over a window."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mesh.balance.endpoint import Endpoint

# Envoy's min_weight_percent default: even at the start of its window an endpoint gets
# some traffic, or nothing would ever warm it up.
MIN_FACTOR = 0.1
# Weights are recomputed this many times over a window, not on every pick: rebuilding
# the tables of the weighted algorithms per pick would make picks O(n).
STEPS = 20


def factor(since: float, now: float, window: float, aggression: float = 1.0) -> float:
    """Share of its weight an endpoint routable since `since` gets at `now` (Envoy's formula).

    Linear for `aggression` 1; above 1 the ramp starts faster, below 1 slower.
    """
    elapsed = now - since
    if window <= 0 or elapsed >= window:
        return 1.0
    return max(MIN_FACTOR, math.pow(max(elapsed, 0.0) / window, 1.0 / aggression))


class Ramp:
    """Effective weights of an endpoint set, stepped up while any of them is warming up."""

    __slots__ = ("_aggression", "_endpoints", "_window", "due", "weights")

    def __init__(self, window: float = 0.0, aggression: float = 1.0) -> None:
        self._window = window
        self._aggression = aggression
        self._endpoints: Sequence[Endpoint] = ()
        self.weights: list[float] = []
        self.due = math.inf  # `now` from which the weights must be refreshed

    def reset(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = endpoints
        self.weights = [float(e.weight) for e in endpoints]
        # update() has no clock: the first pick after it works out who is still warming up.
        self.due = -math.inf if self._window > 0 else math.inf

    def refresh(self, now: float) -> None:
        factors = [factor(e.since, now, self._window, self._aggression) for e in self._endpoints]
        self.weights = [e.weight * f for e, f in zip(self._endpoints, factors, strict=True)]
        self.due = now + self._window / STEPS if min(factors, default=1.0) < 1.0 else math.inf
