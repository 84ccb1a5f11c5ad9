"""Least request: of two endpoints picked at random, the one with fewer requests per weight."""

from __future__ import annotations

from collections.abc import Sequence, Set
from random import Random

from mesh.balance.endpoint import Endpoint
from mesh.balance.p2c import Load, carry, pair
from mesh.balance.slow_start import Ramp


class LeastRequest:
    """Envoy's least_request: P2C on weight / (active + 1)."""

    __slots__ = ("_by_instance", "_endpoints", "_loads", "_ramp")

    def __init__(self, ramp: Ramp | None = None) -> None:
        self._ramp = ramp or Ramp()
        self._endpoints: tuple[Endpoint, ...] = ()
        self._by_instance: dict[str, Load] = {}
        self._loads: list[Load] = []

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._by_instance = carry(self._by_instance, self._endpoints, Load)
        self._loads = [self._by_instance[e.instance] for e in self._endpoints]
        self._ramp.reset(self._endpoints)

    def pick(
        self, rng: Random, now: float, key: bytes | None = None, exclude: Set[str] = frozenset()
    ) -> Endpoint:
        ramp = self._ramp
        if now >= ramp.due:
            ramp.refresh(now)
        i, j = pair(rng, self._endpoints, exclude)
        weights = ramp.weights
        # weight/(active+1) compared cross-multiplied: no division on the hot path. On a
        # tie the first sample wins.
        if weights[j] * (self._loads[i].active + 1) > weights[i] * (self._loads[j].active + 1):
            i = j
        return self._endpoints[i]

    def in_flight(self, instance: str) -> int | None:
        load = self._by_instance.get(instance)
        return 0 if load is None else load.active

    def on_start(self, endpoint: Endpoint, now: float) -> None:
        self._by_instance[endpoint.instance].active += 1

    def on_end(self, endpoint: Endpoint, now: float, rtt: float, ok: bool) -> None:
        self._by_instance[endpoint.instance].active -= 1
