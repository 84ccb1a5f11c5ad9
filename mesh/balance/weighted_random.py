"""Random: each endpoint with probability proportional to its weight."""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Sequence, Set
from random import Random

from mesh.balance.endpoint import Endpoint, allowed
from mesh.balance.slow_start import Ramp


class WeightedRandom:
    """A bisect over cumulative weights: O(log n) per pick."""

    __slots__ = ("_bounds", "_endpoints", "_ramp")

    def __init__(self, ramp: Ramp | None = None) -> None:
        self._ramp = ramp or Ramp()
        self._endpoints: tuple[Endpoint, ...] = ()
        self._bounds: list[float] = []  # running totals of the weights

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._ramp.reset(self._endpoints)
        self._bounds = list(itertools.accumulate(self._ramp.weights))

    def pick(
        self, rng: Random, now: float, key: bytes | None = None, exclude: Set[str] = frozenset()
    ) -> Endpoint:
        ramp = self._ramp
        if now >= ramp.due:
            ramp.refresh(now)
            self._bounds = list(itertools.accumulate(ramp.weights))
        if exclude:
            indexes = allowed(self._endpoints, exclude)
            bounds = list(itertools.accumulate(ramp.weights[i] for i in indexes))
            return self._endpoints[indexes[_draw(rng, bounds)]]
        return self._endpoints[_draw(rng, self._bounds)]

    def in_flight(self, instance: str) -> int | None:
        return None  # picks do not depend on load: it is not counted

    def on_start(self, endpoint: Endpoint, now: float) -> None:
        """Random keeps no state per request."""

    def on_end(self, endpoint: Endpoint, now: float, rtt: float, ok: bool) -> None:
        """Random keeps no state per request."""


def _draw(rng: Random, bounds: list[float]) -> int:
    """The index of the first running total above a uniform draw below the grand total."""
    # hi=n-1: random()*total may round up to the total itself, which must stay in range.
    return bisect_right(bounds, rng.random() * bounds[-1], 0, len(bounds) - 1)
